"""One measurement of the GPU suite (``gpu_suite.sh``), written as one JSON line.

    python experiments/benchmarks/gpu_suite.py lm_436m --out suite.jsonl
    python experiments/benchmarks/gpu_suite.py lm_436m --dry-run      # toy size, any backend

Each line names the measurement, its numbers, the issue's target beside them and the attention
kernel that each traced attention call actually used (``{"cudnn": 48}``, from
``jaxmodels.layers.attention.record_kernels``; ``{}`` for models without attention). Imports
no grain, tfds, orbax or torch for the built-in measurements; the BLIP and Glow steps build
their family's ``Task`` from its config (``--config``) and are skipped, with the reason on the
line, where the family or its config is absent.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# name: the target (the metric, "min" or "max", the bound), or None
MEASUREMENTS = {
    "lm_436m": ("model_tflops", "min", 540.0),
    "siglip_b16_tower": ("images_per_s", "min", 4000.0),
    "siglip_b16_step": None,
    "trn_train_step": ("step_s", "max", 0.20),
    "trn_streaming": ("ms_per_frame", "max", 0.8),
    "blip_step": None,
    "glow_step": None,
}
FAMILY_STEPS = {  # measurement: (family, default config; the dry run adds ":smoke")
    "blip_step": ("blip", "experiments/blip/pretrain.py"),
    "glow_step": ("flows", "experiments/flows/glow.py"),
}


def _bench(name: str):
    """Imports a sibling benchmark script (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", f"{HERE}/{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _kernels(log: list[str]) -> dict[str, int]:
    return dict(collections.Counter(log))


# ------------------------------------------------------------------ measurements


def lm(dry: bool) -> dict:
    """The 436M RoPE LM, seq 2048, batch 16, bf16, cuDNN attention: one core train step."""
    from jaxmodels.layers.attention import record_kernels

    b = _bench("lm_throughput")
    s = dict(b.SIZES["tiny" if dry else "436m"])
    args = argparse.Namespace(
        scan=False, remat="none", attention="auto" if dry else "cudnn",
        dtype="float32" if dry else "bfloat16", param_dtype="float32",
        opt_state_dtype="float32",
    )  # fmt: skip
    with record_kernels() as log:
        run = b.jax_step(s, args)
    steps, repeats = (1, 1) if dry else (5, 3)
    step_s = statistics.median(run(steps) / steps for _ in range(repeats))
    n, flops = b.model_flops(s)
    return dict(
        params_m=round(n / 1e6, 1), seq=s["seq"], batch=s["batch"], dtype=args.dtype,
        step_s=step_s, tokens_per_s=s["batch"] * s["seq"] / step_s,
        model_tflops=flops / step_s / 1e12, attention=_kernels(log),
    )  # fmt: skip


def _siglip(dry: bool, part: str) -> dict:
    import jax
    import optax
    from jax.sharding import AxisType

    from jaxmodels.layers.attention import record_kernels
    from jaxmodels.models.contrastive import model as two_towers
    from jaxmodels.models.contrastive import task as contrastive_task

    b = _bench("contrastive_loss")
    variant, px, n = ("toy/16", 32, 8) if dry else ("B/16", 224, 256)
    config = b.siglip_config("auto" if dry else "cudnn", "Ti/16" if dry else variant)
    if dry:  # two blocks of width 64 per tower
        _toy_towers(config)
    model = two_towers.make_model(config)
    axes = ("data", "fsdp", "tensor")
    mesh = jax.make_mesh((1, 1, 1), axes, (AxisType.Auto,) * 3, devices=jax.devices()[:1])
    loss = contrastive_task.make_loss(config, mesh)
    tx = optax.adamw(1e-4, weight_decay=1e-4)
    with jax.set_mesh(mesh), record_kernels() as log:
        t = b.time_siglip_step(model, loss, tx, n, 1 if dry else 10, px, parts=(part,))[part]
    rate = "images_per_s" if part == "tower" else "pairs_per_s"
    return {"variant": variant, "image_px": px, "batch": n, "dtype": config.train.compute_dtype,
            "step_s": t, rate: n / t, "attention": _kernels(log)}  # fmt: skip


def _toy_towers(config) -> None:
    m, toy = config.model, dict(width=64, depth=2, mlp_dim=128, num_heads=2)
    m.embed_dim = 64
    m.image.update(variant="", patch_size=16, **toy)
    m.text.update(toy)
    config.train.compute_dtype = "float32"


def siglip_tower(dry: bool) -> dict:
    """SigLIP B/16 image tower, forward and backward, 224 px, batch 256, bf16."""
    return _siglip(dry, "tower")


def siglip_step(dry: bool) -> dict:
    """The full SigLIP B/16 two-tower AdamW step, 224 px, batch 256, bf16."""
    return _siglip(dry, "full")


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
    t = b.train_step_time(model, params, D, C, batch, enc, K, 1 if dry else 10)
    return {"batch": batch, "enc_steps": enc, "dec_steps": K, "hidden": H,
            "dtype": jax_name(dtype), "step_s": t, "attention": {}}  # fmt: skip


def trn_stream(dry: bool) -> dict:
    """TRN streaming at batch 1: one jitted step per frame, params cast to bf16 once."""
    b, model, params, (D, _, H, K), dtype = _trn(dry)
    frames = 8 if dry else 300
    t = b.streaming_latency(model, b.oa.cast_params(params, dtype), D, frames)
    return {"frames": frames, "hidden": H, "dtype": jax_name(dtype), "ms_per_frame": t * 1e3,
            "attention": {}}  # fmt: skip


def jax_name(dtype) -> str:
    import jax.numpy as jnp

    return jnp.dtype(dtype).name


def family_step(name: str, dry: bool, config_spec: str = "") -> dict:
    """A family's core train step from its config (BLIP, Glow): skipped while it is absent."""
    family, default = FAMILY_STEPS[name]
    if importlib.util.find_spec(f"jaxmodels.models.{family}") is None:
        return {"status": "skipped", "reason": f"family jaxmodels.models.{family} not present"}
    spec = config_spec or default
    if not os.path.isfile(os.path.join(ROOT, spec.partition(":")[0])):
        return {"status": "skipped", "reason": f"no config {spec}; pass --config"}
    return _core_step(spec + (":smoke" if dry and ":" not in spec else ""), dry)


def _core_step(spec: str, dry: bool) -> dict:
    """Times the core's jitted train step of the family that ``spec`` configures."""
    import jax

    from jaxmodels.config import load_config
    from jaxmodels.layers.attention import record_kernels
    from jaxmodels.parallel import mesh as mesh_lib
    from jaxmodels.train import loop
    from jaxmodels.train import state as state_lib

    config = load_config(spec)
    run = loop.build(config, None)
    batch = next(run.task.train_data(0, 1))
    with jax.set_mesh(run.mesh):
        state = state_lib.create_state(
            run.task.init, run.tx, jax.random.key(0), run.state_sharding,
            use_ema=config.train.ema_halflife_examples > 0,
            init_model_state=run.task.init_model_state,
        )  # fmt: skip
    step, shardings = loop.build_train_step(run, batch)
    placed = mesh_lib.put_batch(batch, shardings)
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
    return {"config": spec, "batch": B, "step_s": t, "examples_per_s": B / t,
            "attention": _kernels(log)}  # fmt: skip


# ------------------------------------------------------------------ driver

RUNNERS = {
    "lm_436m": lm,
    "siglip_b16_tower": siglip_tower,
    "siglip_b16_step": siglip_step,
    "trn_train_step": trn_train,
    "trn_streaming": trn_stream,
}


def measure(name: str, dry: bool, config_spec: str = "") -> dict:
    """Runs one measurement; returns its JSON-able line (status ``ok``, ``skipped``)."""
    import jax

    t0 = time.perf_counter()
    out = family_step(name, dry, config_spec) if name in FAMILY_STEPS else RUNNERS[name](dry)
    line = {"name": name, "status": "ok", "dry_run": dry, **out}
    target = MEASUREMENTS[name]
    if target is not None and line["status"] == "ok":
        key, how, bound = target
        ok = line[key] >= bound if how == "min" else line[key] <= bound
        line["target"] = f"{key} {'>=' if how == 'min' else '<='} {bound}"
        line["meets_target"] = bool(ok) and not dry
    dev = jax.devices()[0]
    line.update(backend=jax.default_backend(), device=dev.device_kind, jax=jax.__version__)
    line["wall_s"] = round(time.perf_counter() - t0, 2)
    return line


def failure(name: str, status: str, rc: int, log: str, timeout_s: float) -> dict:
    """The line written for a measurement that timed out or crashed (no jax import)."""
    tail = ""
    if log and os.path.isfile(log):
        with open(log, errors="replace") as f:
            tail = f.read()[-1500:]
    return {"name": name, "status": status, "rc": rc, "timeout_s": timeout_s, "log_tail": tail}


def write(line: dict, out: str) -> None:
    text = json.dumps(line, default=float)
    print(text, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(text + "\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("name", choices=sorted(MEASUREMENTS))
    p.add_argument("--dry-run", action="store_true", help="toy sizes, same code paths")
    p.add_argument("--out", default="", help="append the JSON line to this file")
    p.add_argument("--config", default="", help="FILE[:ARG] for blip_step / glow_step")
    p.add_argument("--failed", default="", help="(gpu_suite.sh) write a timeout/error line")
    p.add_argument("--rc", type=int, default=0)
    p.add_argument("--log", default="")
    p.add_argument("--timeout", type=float, default=0.0)
    a = p.parse_args(argv)
    if a.failed:
        return write(failure(a.name, a.failed, a.rc, a.log, a.timeout), a.out)
    sys.path.insert(0, ROOT)
    write(measure(a.name, a.dry_run, a.config), a.out)


if __name__ == "__main__":
    main()
