"""LM training throughput: tokens/s, model TFLOP/s and MFU of the jaxmodels train step.

The step is the shared core's (``jaxmodels.train.step.build_train_step``: jitted, donated,
AdamW with clipping) around the ``lm`` family's model and loss, on random tokens (no data
pipeline, no grain/tfds/orbax). On the CPU it also times the same model written in PyTorch
(eager, ``torch.nn.functional.scaled_dot_product_attention``), back to back, so the ratio is
measured under the same load.

    # CPU, jaxmodels beside PyTorch (the issue's 2-core comparison):
    python experiments/benchmarks/lm_throughput.py --sizes cpu --torch
    # fused (the config's default) against separate q/k/v and gate/up, interleaved (--hlo: dots)
    python experiments/benchmarks/lm_throughput.py --sizes cpu --fused 1 --variants fused=0
    # one H100/H200, the 436M model in bf16 with cuDNN attention:
    python experiments/benchmarks/lm_throughput.py --sizes 436m --peak_tflops 989

Model FLOPs per step = 6 * N * tokens (N: matmul parameters, the tied unembedding included,
the embedding lookup not) + causal attention 6 * layers * batch * seq^2 * heads * head_dim
(QK^T and AV, forward and backward, half the square for the causal mask).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# name: model and batch shapes
SIZES = {
    # the CPU comparison: byte vocabulary, 6 layers of width 384
    "cpu": dict(d_model=384, layers=6, heads=6, d_ff=1024, vocab=256, seq=256, batch=16),
    "cpu_small": dict(d_model=256, layers=4, heads=4, d_ff=768, vocab=256, seq=256, batch=16),
    # the GPU suite's --dry-run: the same code paths at toy size (8 rows: 8 fake test devices)
    "tiny": dict(d_model=64, layers=2, heads=2, d_ff=128, vocab=256, seq=32, batch=8),
    # 436.2M parameters (GPU/TPU): d_model 1024, 24 layers, 16 heads, SwiGLU 4096, vocab 32768
    # (earlier labelled "470m"; model_flops counts 402.7M in the blocks + 33.6M tied embedding)
    "436m": dict(d_model=1024, layers=24, heads=16, d_ff=4096, vocab=32768, seq=2048, batch=16),
}


def _size(name: str, args) -> dict:
    """``SIZES[name]`` with the command line's ``--seq``, ``--batch`` and ``--vocab`` overrides."""
    s = dict(SIZES[name])
    for k in ("seq", "batch", "vocab"):
        s[k] = getattr(args, k) or s[k]
    return s


def model_flops(s: dict) -> tuple[int, float]:
    """Returns (matmul parameter count N, model FLOPs per training step)."""
    from jaxmodels.layers.flops import transformer_train_flops

    d, f, layers = s["d_model"], s["d_ff"], s["layers"]
    n = layers * (4 * d * d + 3 * d * f) + s["vocab"] * d
    per_row = transformer_train_flops(n, num_layers=layers, seq_len=s["seq"], attn_dim=d)
    return n, s["batch"] * per_row


# ------------------------------------------------------------------ jaxmodels


def _lm_config(s: dict, args):
    spec = importlib.util.spec_from_file_location("rope_lm", f"{HERE}/../lm/rope_lm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config()
    m = c.model
    m.width, m.depth, m.num_heads, m.mlp_dim = s["d_model"], s["layers"], s["heads"], s["d_ff"]
    m.vocab_size, m.vocab_multiple = s["vocab"], 1
    m.scan_layers, m.remat_policy, m.attention_impl = args.scan, args.remat, args.attention
    c.data.seq_len, c.train.batch_size = s["seq"], s["batch"]
    c.train.compute_dtype = args.dtype
    c.train.param_dtype, c.train.opt_state_dtype = args.param_dtype, args.opt_state_dtype
    if getattr(args, "fused", None) is not None:  # else the config's default
        m.fused_projections = bool(int(args.fused))
    c.train.warmup_steps = 10
    return c


def build_jax_step(s: dict, args):
    """Returns ``(train_step, state, batch)``: the core's jitted step, a fresh state, one batch."""
    import jax

    from jaxmodels.models.lm.loss import lm_metrics
    from jaxmodels.models.lm.model import make_model
    from jaxmodels.parallel import mesh as mesh_lib
    from jaxmodels.train import optim, state, step
    from jaxmodels.train.task import Task

    c = _lm_config(s, args)
    model = make_model(c, s["vocab"])
    B, L = s["batch"], s["seq"]

    def loss_fn(params, batch, rng):
        logits = model.apply({"params": params}, batch["inputs"])
        return lm_metrics(logits, batch, is_bytes=False)

    def init(rng):
        return model.init(rng, jax.numpy.zeros((1, L), jax.numpy.int32))["params"]

    init = state.with_param_dtype(init, c.train)
    task = Task(init=init, loss_fn=loss_fn, train_data=lambda i, n: iter(()))
    mesh = mesh_lib.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    rules = mesh_lib.rules_from_config(c.mesh.rules)
    tx = optim.make_optimizer(c.train)
    rng = jax.random.key(0)
    _, shardings = state.state_shardings(init, tx, rng, mesh, rules, use_ema=False)
    st = state.create_state(init, tx, rng, shardings, use_ema=False)
    tokens = np.random.default_rng(0).integers(0, s["vocab"], (B, L + 1)).astype(np.int32)
    host = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "weights": np.ones((B, L), "f4")}
    bshard = mesh_lib.batch_shardings(host, mesh, rules, {})
    batch = mesh_lib.put_batch(host, bshard)
    train_step = step.build_train_step(
        task, tx, mesh=mesh, rules=rules, state_sharding=shardings, batch_sharding=bshard, seed=0
    )
    return train_step, st, batch


def jax_step(s: dict, args):
    """Returns ``run(n) -> seconds`` for n jaxmodels train steps (compiled beforehand)."""
    import jax

    train_step, st, batch = build_jax_step(s, args)
    holder = [st]

    def run(n: int) -> float:
        jax.block_until_ready(holder[0])
        t0 = time.perf_counter()
        for _ in range(n):
            holder[0], m = train_step(holder[0], batch)
        jax.block_until_ready((holder[0], m))
        return time.perf_counter() - t0

    run(2)  # compile and warm up
    return run


# ------------------------------------------------------------------ PyTorch (eager)


def torch_step(s: dict, args):
    """Returns ``run(n) -> seconds`` for n eager PyTorch steps of the same model."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    d, H = s["d_model"], s["heads"]
    hd = d // H
    inv = 1.0 / 10000 ** (torch.arange(0, hd, 2).float() / hd)
    ang = torch.arange(s["seq"]).float()[:, None] * inv[None]
    cos, sin = ang.cos()[None, None], ang.sin()[None, None]

    def rope(x):  # half layout, like jaxmodels/HF Llama
        x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.n1, self.n2 = nn.RMSNorm(d, eps=1e-6), nn.RMSNorm(d, eps=1e-6)
            self.qkv, self.o = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
            self.gate_up = nn.Linear(d, 2 * s["d_ff"], bias=False)
            self.down = nn.Linear(s["d_ff"], d, bias=False)

        def forward(self, x):
            B, L, _ = x.shape
            q, k, v = self.qkv(self.n1(x)).view(B, L, 3, H, hd).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
            x = x + self.o(a.transpose(1, 2).reshape(B, L, d))
            g, u = self.gate_up(self.n2(x)).chunk(2, dim=-1)
            return x + self.down(F.silu(g) * u)

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(s["vocab"], d)
            self.blocks = nn.ModuleList(Block() for _ in range(s["layers"]))
            self.norm = nn.RMSNorm(d, eps=1e-6)

        def forward(self, t):
            x = self.emb(t)
            for b in self.blocks:
                x = b(x)
            return self.norm(x) @ self.emb.weight.T

    torch.manual_seed(0)
    model = LM()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    tokens = torch.randint(0, s["vocab"], (s["batch"], s["seq"] + 1))
    x, y = tokens[:, :-1], tokens[:, 1:]

    def one():
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    def run(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            one()
        return time.perf_counter() - t0

    run(1)
    return run


# ------------------------------------------------------------------ table


def _worker(kind: str, s: dict, args, conn) -> None:
    """Builds one runner in its own process, then times ``n`` steps whenever asked."""
    if kind == "pytorch":
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no spinning while idle
        run = torch_step(s, args)
    else:
        variant = _variant(args, kind)
        if getattr(variant, "xla_flags", ""):  # this worker's jax has not started yet
            os.environ["XLA_FLAGS"] = variant.xla_flags
        run = jax_step(s, variant)
    conn.send("ready")
    while (n := conn.recv()) is not None:
        w0, c0 = time.perf_counter(), time.process_time()
        run(n)
        conn.send(((time.perf_counter() - w0) / n, (time.process_time() - c0) / n))


def _variant(args, kind: str):
    """``jaxmodels``, ``jaxmodels:bfloat16`` (a compute dtype) or ``jaxmodels:KEY=VALUE+...``
    (any of this script's options, e.g. ``attention=blockwise+xla_flags=...``)."""
    out = argparse.Namespace(**vars(args))
    for part in kind.partition(":")[2].split("+"):
        key, eq, value = part.partition("=")
        if eq:
            setattr(out, key, value)
        elif part:
            out.dtype = part
    return out


def _time_all(kinds, s, args) -> dict[str, list[tuple[float, float]]]:
    """Times each kind in its own process, one at a time, interleaved over the repeats."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    workers = {}
    for k in kinds:  # build one after another, so compiles do not overlap the timing
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(k, s, args, child), daemon=True)
        proc.start()
        if parent.recv() != "ready":
            raise RuntimeError(f"{k} worker failed to start")
        workers[k] = (proc, parent)
    times = {k: [] for k in kinds}
    for _ in range(args.repeats):
        for k, (_, conn) in workers.items():
            conn.send(args.steps)
            times[k].append(conn.recv())
    for proc, conn in workers.values():
        conn.send(None)
        proc.join()
    return times


def print_hlo(args) -> None:
    """One line per size and dtype: the compiled step's ``hlo_stats`` (bytes, selects, dots)."""
    import jax

    spec = importlib.util.spec_from_file_location("hlo_stats", f"{HERE}/hlo_stats.py")
    hlo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hlo)
    args.dtype = args.dtype or ("float32" if jax.default_backend() == "cpu" else "bfloat16")
    for name in args.sizes.split(","):
        s = _size(name, args)
        for dtype in [args.dtype] + [v for v in args.variants.split(",") if v]:
            variant = _variant(args, f"jaxmodels:{dtype}")
            train_step, st, batch = build_jax_step(s, variant)
            lowered = train_step.lower(st, batch)
            stats = hlo.stats(lowered, lowered.compile())
            label = dtype if dtype == variant.dtype else f"{variant.dtype} {dtype}"
            print(hlo.line(f"{name} {label}", stats), flush=True)
            del st
            jax.clear_caches()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="cpu", help=f"comma-separated from {sorted(SIZES)}")
    p.add_argument("--seq", type=int, default=0, help="override the sequence length")
    p.add_argument("--batch", type=int, default=0, help="override the batch size")
    p.add_argument("--vocab", type=int, default=0, help="override the vocabulary size")
    p.add_argument("--steps", type=int, default=5, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=3, help="back-to-back timing repeats")
    p.add_argument("--dtype", default="", help="compute dtype (default: float32 CPU, else bf16)")
    p.add_argument("--param_dtype", default="float32", help="train.param_dtype")
    p.add_argument("--opt_state_dtype", default="float32", help="train.opt_state_dtype")
    p.add_argument("--attention", default="auto", help="attention_impl: auto|xla|cudnn|splash")
    p.add_argument("--fused", type=int, default=None, help="0|1: separate|fused q/k/v, gate/up")
    p.add_argument("--scan", action="store_true", help="scan over layers")
    p.add_argument("--remat", default="none", help="remat policy (none, dots_saveable, full)")
    p.add_argument("--peak_tflops", type=float, default=0.0, help="device peak for MFU")
    p.add_argument("--torch", action="store_true", help="also time PyTorch eager (CPU)")
    p.add_argument("--variants", default="", help="extra jaxmodels runs, e.g. bfloat16,fused=1")
    p.add_argument("--hlo", action="store_true", help="count the compiled step's ops, no timing")
    args = p.parse_args(argv)
    if args.hlo:
        return print_hlo(args)
    kinds = ["jaxmodels"] + [f"jaxmodels:{v}" for v in args.variants.split(",") if v]
    kinds += ["pytorch"] if args.torch else []
    if len(kinds) > 1:  # workers share one card: none may preallocate 75% of its memory
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax

    args.dtype = args.dtype or ("float32" if jax.default_backend() == "cpu" else "bfloat16")
    print(f"backend={jax.default_backend()} devices={jax.devices()} dtype={args.dtype} "
          f"attention={args.attention} scan={args.scan} remat={args.remat} "
          f"cpu_count={os.cpu_count()} XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")  # fmt: skip
    head = f"{'size':10} {'impl':34} {'seq':>5} {'batch':>5} {'params':>8} {'step_s':>7} "
    print(head + f"{'cpu_s':>7} {'tok/s':>8} {'TFLOP/s':>8} {'MFU':>6}", flush=True)
    for name in args.sizes.split(","):
        s = _size(name, args)
        n, flops = model_flops(s)
        if len(kinds) == 1:  # one runner: time it here (GPU/TPU runs)
            run = jax_step(s, args)
            ts = [(run(args.steps) / args.steps, 0.0) for _ in range(args.repeats)]
            times = {"jaxmodels": ts}
        else:
            times = _time_all(kinds, s, args)
        for k, ts in times.items():
            t = statistics.median(w for w, _ in ts)
            cpu = statistics.median(c for _, c in ts)
            tflops = flops / t / 1e12
            mfu = f"{tflops / args.peak_tflops:6.1%}" if args.peak_tflops else "     -"
            print(f"{name:10} {k:34} {s['seq']:5d} {s['batch']:5d} {n / 1e6:7.1f}M {t:7.3f} "
                  f"{cpu:7.3f} {s['batch'] * s['seq'] / t:8.0f} {tflops:8.3f} {mfu}  "
                  f"(wall per repeat: {', '.join(f'{w:.3f}' for w, _ in ts)})")  # fmt: skip
        if "pytorch" in times:
            med = {k: statistics.median(w for w, _ in ts) for k, ts in times.items()}
            cpu = {k: statistics.median(c for _, c in ts) for k, ts in times.items()}
            for k in kinds[:-1]:
                print(f"{name}: {k} / pytorch tokens/s = {med['pytorch'] / med[k]:.2f}x "
                      f"(by CPU time per step: {cpu['pytorch'] / cpu[k]:.2f}x)")  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
