"""Online action detection speed: per-frame streaming latency, whole-video scan throughput, and
the original-size TRN training step.

Prints one table; imports no grain / tfds / orbax (runs on the lent GPU machine as is).

CPU (the embedded configs' sizes: hidden 64, 64-d features, 12 classes):
  python experiments/benchmarks/online_action.py --preset cpu
Original-size TRN (THUMOS: batch 32, enc_steps 64, dec_steps 8, hidden 4096, 3072-d features,
22 classes; bf16 compute, f32 params, Adam; params cast to bf16 once for streaming), on a GPU:
  python experiments/benchmarks/online_action.py --preset original
TRN's train step alone at hidden 512 (CPU-sized: median wall and process CPU time per step), or
the compiled step's HLO counts:
  python experiments/benchmarks/online_action.py --preset mid --train_only
  python experiments/benchmarks/online_action.py --preset mid --hlo
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmodels.config import load_config
from jaxmodels.models.online_action import loss as losses
from jaxmodels.models.online_action import model as oa
from jaxmodels.models.online_action.detectors import build_model

HERE = os.path.dirname(os.path.abspath(__file__))
PRESETS = {
    # name: (models, input dim, classes, hidden, dec_steps, IDN window)
    "cpu": (("trn", "idn", "lstm", "gru", "mlp"), 64, 12, 64, 4, 16),
    "original": (("trn",), 3072, 22, 4096, 8, 16),
    # TRN between the two, for CPU timings of the train step (the original takes minutes)
    "mid": (("trn",), 512, 22, 512, 8, 16),
}


def make(name, D, C, H, dec_steps, window, dtype):
    """The detector ``name`` from its experiment config, resized to the preset."""
    m = load_config(f"experiments/online_action/{name}.py").model
    sizes = dict(width=H, embed_dim=H, dec_steps=dec_steps, window=window)
    for key, value in sizes.items():
        if key in m:
            m[key] = value
    return build_model(m, D, C, dtype)


def timed(fn, iters):
    """Mean seconds per call of ``fn`` (which blocks on its result) after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


def streaming_latency(model, params, D, frames):
    """Seconds per streamed frame at batch 1 (jitted step, params already in compute dtype)."""
    init_state, step = oa.streaming(model)
    xs = jax.random.normal(jax.random.key(0), (frames, 1, D), model.dtype)
    box = {"state": init_state(1), "t": 0}

    def one():
        probs, box["state"] = step(params, box["state"], xs[box["t"] % frames])
        box["t"] += 1
        probs.block_until_ready()

    return timed(one, frames)


def scan_throughput(model, params, D, batch, length, iters):
    """Frames per second of the whole-video scan at a large batch."""
    x = jax.random.normal(jax.random.key(1), (batch, length, D), model.dtype)
    run = jax.jit(lambda p, x: model.apply({"params": p}, x)[0]["scores"])
    seconds = timed(lambda: run(params, x).block_until_ready(), iters)
    return batch * length / seconds


def train_step_times(model, params, D, C, batch, enc_steps, dec_steps, iters):
    """Seconds per TRN training step (forward, backward, Adam update, buffers donated), the
    median of ``iters`` steps after the compiling one: ``(wall, process CPU, compile wall)``
    (CPU time of every thread of the process: XLA's CPU step runs on several)."""
    step, state, x, y = build_train_step(model, params, D, C, batch, enc_steps, dec_steps)

    def one():
        state["p"], state["o"], loss = step(state["p"], state["o"], x, y)
        loss.block_until_ready()

    compile_s = time.perf_counter()
    one()
    compile_s = time.perf_counter() - compile_s
    wall, cpu = [], []
    for _ in range(iters):
        t, c = time.perf_counter(), time.process_time()
        one()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu), compile_s


def build_train_step(model, params, D, C, batch, enc_steps, dec_steps):
    """The jitted TRN train step, its state ``{"p", "o"}`` and one batch ``x, y``."""
    opt = optax.adam(5e-4)
    state = {"p": params, "o": opt.init(params)}
    x = jax.random.normal(jax.random.key(2), (batch, enc_steps, D), jnp.float32)
    labels = jax.random.randint(jax.random.key(3), (batch, enc_steps + dec_steps), 0, C)
    y = jax.nn.one_hot(labels, C)

    def step(p, o, x, y):
        def loss_fn(p):
            out, _ = model.apply({"params": p}, x)
            return losses.trn_loss(out, y, ignore_index=C - 1)[0]

        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, o = opt.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    return jax.jit(step, donate_argnums=(0, 1)), state, x, y


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--models", default="", help="comma list; default: the preset's")
    p.add_argument("--dtype", default="", help="compute dtype; default cpu: float32, else bf16")
    p.add_argument("--frames", type=int, default=0, help="streamed frames for the latency")
    p.add_argument("--scan_batch", type=int, default=0)
    p.add_argument("--scan_length", type=int, default=0)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--hlo", action="store_true", help="TRN train step's HLO counts, no timing")
    p.add_argument("--train_only", action="store_true", help="time TRN's train step only")
    a = p.parse_args()
    models, D, C, H, K, W = PRESETS[a.preset]
    models = a.models.split(",") if a.models else models
    cpu = a.preset != "original"
    dtype = jnp.dtype(a.dtype or ("float32" if cpu else "bfloat16"))
    frames = a.frames or (200 if cpu else 300)
    scan_batch, scan_length = a.scan_batch or (256 if cpu else 32), a.scan_length or 600
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), dtype {dtype.name}")
    if a.hlo:
        return print_hlo(D, C, H, K, W, dtype)
    print(
        "| model | params | latency / frame, batch 1 | scan frames/s (batch x length) "
        "| train step |"
    )
    print("|---|---|---|---|---|")
    for name in models:
        model = make(name, D, C, H, K, W, dtype)
        params = nn.unbox(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 2, D)))["params"])
        n = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params))
        cast = oa.cast_params(params, dtype)
        latency = throughput = float("nan")
        if not a.train_only:
            latency = streaming_latency(model, cast, D, frames)
            throughput = scan_throughput(model, cast, D, scan_batch, scan_length, a.iters)
        train = ""
        if name == "trn":
            wall, cpu, compile_s = train_step_times(model, params, D, C, 32, 64, K, a.iters)
            train = (
                f"{wall:.3f} s wall, {cpu:.3f} s CPU (median of {a.iters}; batch 32, enc_steps "
                f"64, dec_steps {K}; compiled in {compile_s:.0f} s, load {os.getloadavg()[0]:.1f})"
            )
        print(
            f"| {name} | {n / 1e6:.3g}M | {latency * 1e3:.3f} ms | "
            f"{throughput:,.0f} ({scan_batch} x {scan_length}) | {train} |",
            flush=True,
        )


def print_hlo(D, C, H, K, W, dtype) -> None:
    """The TRN train step's ``hlo_stats`` at batch 32, enc_steps 64: ``loop_dots_big`` counts
    the weight-sized work (at least H x H elements) inside the scans' loops."""
    spec = importlib.util.spec_from_file_location("hlo_stats", f"{HERE}/hlo_stats.py")
    hlo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hlo)
    model = make("trn", D, C, H, K, W, dtype)
    params = nn.unbox(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 2, D)))["params"])
    step, state, x, y = build_train_step(model, params, D, C, 32, 64, K)
    lowered = step.lower(state["p"], state["o"], x, y)
    print(hlo.line(f"trn H={H} {dtype.name}", hlo.stats(lowered, lowered.compile(), big=H * H)))


if __name__ == "__main__":
    main()
