"""One measurement of the GPU suite (``gpu_suite.sh``), written as one JSON line.

    python experiments/benchmarks/gpu_suite.py lm_436m --out suite.jsonl
    python experiments/benchmarks/gpu_suite.py lm_436m --dry-run      # toy size, any backend
    python experiments/benchmarks/gpu_suite.py --list                 # the lines, GPU limits
    python experiments/benchmarks/gpu_suite.py --check-imports        # what the suite imports
    python experiments/benchmarks/gpu_suite.py --summary suite.jsonl  # the lines as a table

Every line names the measurement, its step time (``step_ms``) beside the throughput derived
from it (``throughput``, ``unit``; the LM adds model TFLOP/s and the FLOP convention), the
issue's target where there is one, and the attention kernel that each traced attention call
actually used (``{"cudnn": 48}``, from ``jaxmodels.layers.attention.record_kernels``; ``{}``
for models without attention). The suite imports jax, flax, optax, ml_collections and numpy
only (``--check-imports`` proves it): no grain, tfds, orbax, scikit-learn or torch. The BLIP,
diffusion and Glow lines build their family's ``Task`` from its config at the paper's base
size, on images the suite writes itself, and time the core's train step on the first batch of
the family's own data source (read without grain: the step is timed, not the pipeline).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib
import importlib.metadata
import importlib.util
import itertools
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# The lines in the order they run: what matters most, and compiles longest, first. Each gets
# its own process and this many seconds on a GPU: a cold XLA compile (the unrolled 24-layer
# LM's with cuDNN autotuning is the longest), the parameter init, a warm-up and the timed
# steps. gpu_suite.sh lowers a limit to what is left of the suite's budget.
# name: (GPU time limit in seconds, the target (metric, "min"|"max", bound) or None)
LINES = {
    "lm_436m": (180, ("model_tflops", "min", 540.0)),
    "vit_b16": (90, ("images_per_s", "min", 4000.0)),
    "siglip_loss": (45, None),
    "trn_train_step": (60, ("step_s", "max", 0.20)),
    "trn_streaming": (45, ("ms_per_frame", "max", 0.8)),
    "blip_base": (150, None),
    "diffusion_unet": (90, None),
    "glow": (100, None),
    "siglip_b16_step": (100, None),
}
# What the measurements import beyond the standard library (``--check-imports`` imports each).
IMPORTS = (
    "numpy", "jax", "flax.linen", "optax", "ml_collections",
    "jaxmodels.config", "jaxmodels.layers.attention", "jaxmodels.layers.vit",
    "jaxmodels.losses.contrastive", "jaxmodels.parallel.mesh", "jaxmodels.layers.flops",
    "jaxmodels.train.loop", "jaxmodels.train.optim", "jaxmodels.train.state",
    "jaxmodels.train.step", "jaxmodels.train.task", "jaxmodels.data.pipeline",
    "jaxmodels.models.lm.model", "jaxmodels.models.lm.loss",
    "jaxmodels.models.contrastive.model", "jaxmodels.models.contrastive.task",
    "jaxmodels.models.online_action.model", "jaxmodels.models.online_action.loss",
    "jaxmodels.models.online_action.detectors", "jaxmodels.models.blip",
    "jaxmodels.models.diffusion", "jaxmodels.models.flows",
)  # fmt: skip
# Never imported by the suite: a pinned install without them must do (--check-imports says so).
NOT_NEEDED = ("grain", "tensorflow_datasets", "orbax", "sklearn", "torch", "tensorstore")


def _bench(name: str):
    """Imports a sibling benchmark script (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", f"{HERE}/{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _kernels(log: list[str]) -> dict[str, int]:
    return dict(collections.Counter(log))


def _rate(step_s: float, per_step: float, unit: str) -> dict:
    """The step time in ms and the throughput derived from it (``per_step`` units a step)."""
    return {"step_s": step_s, "step_ms": step_s * 1e3, "throughput": per_step / step_s,
            "unit": unit}  # fmt: skip


# ------------------------------------------------------------------ measurements


def lm(dry: bool) -> dict:
    """The 436M RoPE LM, seq 2048, batch 16, bf16, cuDNN attention, unrolled layers: one core
    train step (the fast path; scan over layers compiles faster and runs slower)."""
    from jaxmodels.layers.attention import record_kernels

    b = _bench("lm_throughput")
    s = dict(b.SIZES["tiny" if dry else "436m"])
    args = argparse.Namespace(
        scan=False, remat="none", attention="auto" if dry else "cudnn",
        dtype="float32" if dry else "bfloat16", param_dtype="float32",
        opt_state_dtype="float32",
        fused=0,  # separate q/k/v, gate/up as before: timing fused too does not fit 180 s
    )  # fmt: skip
    with record_kernels() as log:
        run = b.jax_step(s, args)
    steps, repeats = (1, 1) if dry else (5, 3)
    step_s = statistics.median(run(steps) / steps for _ in range(repeats))
    n, flops = b.model_flops(s)
    tokens = s["batch"] * s["seq"]
    return dict(
        params_m=round(n / 1e6, 1), seq=s["seq"], batch=s["batch"], dtype=args.dtype,
        **_rate(step_s, tokens, "tokens/s"), tokens_per_s=tokens / step_s,
        model_tflops=flops / step_s / 1e12, flops_per_step=flops,
        flops_convention="6*N*tokens (N: matmul params, tied unembedding in) + causal "
        "attention 6*layers*batch*seq^2*d_model/2; no recompute counted",
        attention=_kernels(log),
    )  # fmt: skip


def _siglip(dry: bool, part: str) -> dict:
    import jax
    import optax
    from jax.sharding import AxisType

    from jaxmodels.layers.attention import record_kernels
    from jaxmodels.models.contrastive import model as two_towers
    from jaxmodels.models.contrastive import task as contrastive_task

    b = _bench("contrastive_loss")
    preset, px, n = ("toy/16", 32, 8) if dry else ("B/16", 224, 256)
    config = b.siglip_config("auto" if dry else "cudnn", "Ti/16" if dry else preset, px)
    if dry:  # two blocks of width 64 per tower
        _toy_towers(config)
    model = two_towers.make_model(config)
    axes = ("data", "fsdp", "tensor")
    mesh = jax.make_mesh((1, 1, 1), axes, (AxisType.Auto,) * 3, devices=jax.devices()[:1])
    loss = contrastive_task.make_loss(config, mesh)
    tx = optax.adamw(1e-4, weight_decay=1e-4)
    with jax.set_mesh(mesh), record_kernels() as log:
        t = b.time_siglip_step(model, loss, tx, n, 1 if dry else 10, px, parts=(part,))[part]
    unit = "images/s" if part == "tower" else "pairs/s"
    return {"preset": preset, "image_px": px, "batch": n, "dtype": config.train.compute_dtype,
            **_rate(t, n, unit), unit.replace("/", "_per_"): n / t,
            "attention": _kernels(log)}  # fmt: skip


def _toy_towers(config) -> None:
    m, toy = config.model, dict(width=64, depth=2, mlp_dim=128, num_heads=2)
    m.embed_dim = 64
    m.image.update(preset="", patch_size=16, **toy)
    m.text.update(toy)
    config.train.compute_dtype = "float32"


def vit_b16(dry: bool) -> dict:
    """ViT-B/16 (the SigLIP image tower), forward and backward, 224 px, batch 256, bf16."""
    return _siglip(dry, "tower")


def siglip_step(dry: bool) -> dict:
    """The full SigLIP B/16 two-tower AdamW step, 224 px, batch 256, bf16."""
    return _siglip(dry, "full")


def siglip_loss(dry: bool) -> dict:
    """SigLIP's chunked sigmoid loss with its gradients at SigLIP's batch, 32768 pairs of
    768-d (B/16) embeddings on one device: the 32768^2 logits of the loss, nothing else."""
    b = _bench("contrastive_loss")
    n, dim = (64, 32) if dry else (32768, 768)
    fn, args = b.loss_case("chunked_sigmoid", 1, n, dim)
    t = b._time(fn, *args, iters=1 if dry else 10)
    return {"batch": n, "dim": dim, "dtype": "float32", **_rate(t, n, "pairs/s"),
            "attention": {}}  # fmt: skip


def _trn(dry: bool):
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    b = _bench("online_action")
    D, C, H, K = (16, 5, 32, 2) if dry else (3072, 22, 4096, 8)
    dtype = jnp.float32 if dry else jnp.bfloat16
    model = b.make("trn", D, C, H, K, 16, dtype)
    params = nn.unbox(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 2, D)))["params"])
    return b, model, params, (D, C, H, K), dtype


def trn_train(dry: bool) -> dict:
    """TRN at the original size (THUMOS features): batch 32, enc 64, dec 8, hidden 4096, bf16."""
    b, model, params, (D, C, H, K), dtype = _trn(dry)
    batch, enc = (2, 8) if dry else (32, 64)
    t = b.train_step_times(model, params, D, C, batch, enc, K, 1 if dry else 10)[0]
    return {"batch": batch, "enc_steps": enc, "dec_steps": K, "hidden": H,
            "dtype": jax_name(dtype), **_rate(t, batch, "windows/s"),
            "attention": {}}  # fmt: skip


def trn_stream(dry: bool) -> dict:
    """TRN streaming at batch 1: one jitted step per frame, params cast to bf16 once."""
    b, model, params, (D, _, H, K), dtype = _trn(dry)
    frames = 8 if dry else 300
    t = b.streaming_latency(model, b.oa.cast_params(params, dtype), D, frames)
    return {"frames": frames, "hidden": H, "dtype": jax_name(dtype), "ms_per_frame": t * 1e3,
            **_rate(t, 1, "frames/s"), "attention": {}}  # fmt: skip


def jax_name(dtype) -> str:
    import jax.numpy as jnp

    return jnp.dtype(dtype).name


# ------------------------------------------------------------------ family train steps

# line: (config FILE[:ARGS], images the suite writes (side, channels) or None, the GPU size's
# overrides of the config, the dry run's (applied to FILE:ARGS,smoke)). The GPU sizes are the
# papers' base models; the data stays the family's (BLIP's rendered scenes and its word
# vocabulary, not BERT's 30522 tokens) or random uint8 images at CIFAR-10's size. BLIP and the
# UNet time their configs' ``bf16`` variant (bfloat16 compute, float32 params), the dry run too.
# fmt: off
FAMILY_LINES = {
    "blip_base": (
        "experiments/blip/pretrain.py:bf16", None,
        {  # BLIP ViT-B/16 (Li et al., 2022, Sec. 4.1) + BERT-base text side, 224 px
            **{f"model.{t}.{k}": v for t in ("image", "text") for k, v in
               dict(width=768, depth=12, mlp_dim=3072, num_heads=12).items()},
            "model.image.patch_size": 16, "model.embed_dim": 256, "model.attention_impl": "cudnn",
            "data.image_size": 224, "data.train_size": 64, "data.eval_size": 16,
            "data.retrieval_size": 16, "data.caption_eval_size": 8, "data.eval_batch_size": 16,
            "train.batch_size": 64,
        },
        {},
    ),
    "diffusion_unet": (
        "experiments/diffusion/digits.py:bf16", (32, 3),
        {  # EDM's DDPM++ CIFAR-10 UNet (Karras et al., 2022, Table 7), unconditional
            "model.width": 128, "model.channel_mult": (2, 2, 2), "model.depth": 4,
            "model.attn_resolutions": (16,), "model.num_heads": 1, "model.dropout_rate": 0.13,
            "model.class_conditional": False, "data.image_size": 32, "train.batch_size": 128,
        },
        {"model.class_conditional": False, "data.image_size": 8},
    ),
    "glow": (
        "experiments/flows/glow.py", (32, 3),
        {  # Glow on CIFAR-10 (Kingma & Dhariwal, 2018, Sec. 5): L=3, K=32, 512 channels
            "model.num_levels": 3, "model.steps_per_level": 32, "model.width": 512,
            "train.batch_size": 64, "train.compute_dtype": "bfloat16",
        },
        {},
    ),
}
# fmt: on


def family_config(name: str, dry: bool, image_dir: str):
    """The line's config: its file at the GPU size (``smoke`` added to its args and toy data for
    the dry run), reading the images it needs from an ``.npy`` written under ``image_dir``."""
    import numpy as np

    from jaxmodels.config import load_config
    from jaxmodels.train.resume import flatten

    spec, images, gpu, toy = FAMILY_LINES[name]
    file, _, args = spec.partition(":")
    args = ",".join(a for a in (args, "smoke" if dry else "") if a)
    config = load_config(f"{file}:{args}")
    overrides = toy if dry else gpu
    unknown = sorted(set(overrides) - set(flatten(config.to_dict())))
    if unknown:  # update_from_flattened_dict would add them, silently unused
        raise KeyError(f"{name}: {spec} has no key(s) {unknown}")
    config.update_from_flattened_dict(overrides)
    if images is not None:  # random uint8 images: enough rows for a batch after the holdout
        side, channels = (8, images[1]) if dry else images
        rows = 2 * max(config.train.batch_size, config.model.get("init_batch", 0))
        x = np.random.default_rng(0).integers(0, 256, (rows, side, side, channels), np.uint8)
        path = os.path.join(image_dir, f"{name}.npy")
        np.save(path, x)
        config.data.path = path
    return config


@contextlib.contextmanager
def _without_grain():
    """Lets ``Task.train_data`` yield its source's first batch forever, without grain."""
    import numpy as np

    from jaxmodels.data import pipeline

    def first_batch(source, *, global_batch_size, transform=None, **_):
        rows = [source[i % len(source)] for i in range(global_batch_size)]
        rows = [transform(r) for r in rows] if transform is not None else rows
        return itertools.repeat({k: np.stack([r[k] for r in rows]) for k in rows[0]})

    real = pipeline.make_iterator
    pipeline.make_iterator = first_batch
    try:
        yield
    finally:
        pipeline.make_iterator = real


def build_family(name: str, dry: bool, image_dir: str):
    """The line's ``Run`` (task, optimizer, abstract state: nothing allocated or compiled) and
    the first batch of its family's data."""
    from jaxmodels.train import loop

    with _without_grain():
        run = loop.build(family_config(name, dry, image_dir), None)
        return run, next(run.task.train_data(0, 1))


def family_step(name: str, dry: bool) -> dict:
    """A family's core train step (BLIP, diffusion, Glow) from its config at the base size."""
    with tempfile.TemporaryDirectory() as image_dir:
        return _core_step(*build_family(name, dry, image_dir), dry)


def prepare_step(run, batch):
    """The core's jitted train step of ``run`` (not yet compiled), its initial state, and
    ``batch`` placed on the mesh as the step takes it."""
    import jax

    from jaxmodels.parallel import mesh as mesh_lib
    from jaxmodels.train import loop
    from jaxmodels.train import state as state_lib

    with jax.set_mesh(run.mesh):
        state = state_lib.create_state(
            run.task.init, run.tx, jax.random.key(0), run.state_sharding,
            use_ema=run.config.train.ema_halflife_examples > 0,
            init_model_state=run.task.init_model_state,
        )  # fmt: skip
    step, shardings = loop.build_train_step(run, batch)
    return step, state, mesh_lib.put_batch(batch, shardings)


def _core_step(run, batch, dry: bool) -> dict:
    """Times the core's jitted train step of ``run`` on ``batch``."""
    import jax

    from jaxmodels.layers.attention import record_kernels

    config = run.config
    step, state, placed = prepare_step(run, batch)
    with record_kernels() as log:
        state, m = step(state, placed)  # traces and compiles
    jax.block_until_ready(m)
    times = []
    for _ in range(1 if dry else 10):
        t0 = time.perf_counter()
        state, m = step(state, placed)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    t, B = statistics.median(times), config.train.batch_size
    unit = "pairs/s" if config.family == "blip" else "images/s"
    n = sum(x.size for x in jax.tree.leaves(run.abstract_state.params))
    return {"family": config.family, "params_m": round(n / 1e6, 1), "batch": B,
            "dtype": config.train.compute_dtype, **_rate(t, B, unit),
            "attention": _kernels(log)}  # fmt: skip


# ------------------------------------------------------------------ driver

RUNNERS = {
    "lm_436m": lm,
    "vit_b16": vit_b16,
    "siglip_loss": siglip_loss,
    "trn_train_step": trn_train,
    "trn_streaming": trn_stream,
    "siglip_b16_step": siglip_step,
}
assert set(RUNNERS) | set(FAMILY_LINES) == set(LINES)


def measure(name: str, dry: bool) -> dict:
    """Runs one measurement; returns its JSON-able line (status ``ok``)."""
    import jax

    t0 = time.perf_counter()
    out = family_step(name, dry) if name in FAMILY_LINES else RUNNERS[name](dry)
    line = {"name": name, "status": "ok", "dry_run": dry, **out}
    target = LINES[name][1]
    if target is not None:
        key, how, bound = target
        ok = line[key] >= bound if how == "min" else line[key] <= bound
        line["target"] = f"{key} {'>=' if how == 'min' else '<='} {bound}"
        line["meets_target"] = bool(ok) and not dry
    dev = jax.devices()[0]
    line.update(backend=jax.default_backend(), device=dev.device_kind, jax=jax.__version__)
    line["wall_s"] = round(time.perf_counter() - t0, 2)
    return line


def check_imports() -> dict:
    """Imports everything the measurements import, then builds each family line's task and
    first batch at toy size (their data paths import lazily; nothing is compiled). The line
    lists what failed, by module or line, and the versions imported."""
    failed, versions = {}, {}
    for module in IMPORTS:
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - any failure is reported, by module
            failed[module] = f"{type(e).__name__}: {e}"
    for name in FAMILY_LINES if not failed else ():
        try:
            with tempfile.TemporaryDirectory() as image_dir:
                build_family(name, True, image_dir)
        except Exception as e:  # noqa: BLE001
            failed[f"{name} (toy build)"] = f"{type(e).__name__}: {e}"
    for dist in ("jax", "jaxlib", "flax", "optax", "ml_collections", "numpy"):
        with contextlib.suppress(Exception):
            versions[dist] = importlib.metadata.version(dist)
    stray = sorted(m for m in NOT_NEEDED if m in sys.modules)
    line = {"name": "imports", "status": "error" if failed or stray else "ok",
            "python": sys.version.split()[0], "versions": versions, "failed": failed,
            "imported_unneeded": stray}  # fmt: skip
    return line


def failure(name: str, status: str, rc: int, log: str, timeout_s: float) -> dict:
    """The line written for a measurement that timed out or crashed (no jax import)."""
    tail = ""
    if log and os.path.isfile(log):
        with open(log, errors="replace") as f:
            tail = f.read()[-1500:]
    return {"name": name, "status": status, "rc": rc, "timeout_s": timeout_s, "log_tail": tail}


def summary(path: str) -> str:
    """The suite's lines as a Markdown table: step time beside the throughput derived from it."""
    rows = ["| line | status | step ms | throughput | target | meets | attention |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    with open(path) as f:
        for text in f:
            x = json.loads(text)
            if x["name"] in ("install", "imports"):
                continue
            step = f"{x['step_ms']:.3f}" if "step_ms" in x else ""
            rate = f"{x['throughput']:,.1f} {x['unit']}" if "throughput" in x else ""
            if "model_tflops" in x:
                rate += f" ({x['model_tflops']:.1f} model TFLOP/s)"
            status = x["status"] + (f" ({x['timeout_s']:g} s)" if x["status"] == "timeout" else "")
            meets = {True: "yes", False: "no"}.get(x.get("meets_target"), "")
            rows.append(f"| {x['name']} | {status} | {step} | {rate} | {x.get('target', '')} "
                        f"| {meets} | {x.get('attention', '')} |")  # fmt: skip
    return "\n".join(rows)


def write(line: dict, out: str) -> None:
    text = json.dumps(line, default=float)
    print(text, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(text + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("name", nargs="?", choices=list(LINES))
    p.add_argument("--dry-run", action="store_true", help="toy sizes, same code paths")
    p.add_argument("--out", default="", help="append the JSON line to this file")
    p.add_argument("--list", action="store_true", help="print 'name limit_s' per line, in order")
    p.add_argument("--check-imports", action="store_true", help="import what the suite imports")
    p.add_argument("--summary", default="", help="print the JSON lines of FILE as a table")
    p.add_argument("--failed", default="", help="(gpu_suite.sh) write a timeout/error line")
    p.add_argument("--rc", type=int, default=0)
    p.add_argument("--log", default="")
    p.add_argument("--timeout", type=float, default=0.0)
    a = p.parse_args(argv)
    if a.list:
        print("\n".join(f"{name} {limit}" for name, (limit, _) in LINES.items()))
        return 0
    if a.summary:
        print(summary(a.summary))
        return 0
    sys.path.insert(0, ROOT)
    if a.check_imports:
        line = check_imports()
        write(line, a.out)
        return 0 if line["status"] == "ok" else 1
    if a.name is None:
        p.error("name a measurement, or pass --list, --check-imports or --summary")
    if a.failed:
        write(failure(a.name, a.failed, a.rc, a.log, a.timeout), a.out)
        return 0
    write(measure(a.name, a.dry_run), a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
