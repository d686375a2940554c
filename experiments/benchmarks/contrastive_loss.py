"""Benchmark: chunked vs all-gather sigmoid vs all-gather softmax contrastive losses.

CPU mode (default) fakes devices with XLA_FLAGS and prints, per loss, device count and
per-device batch, the compiled per-device memory of loss+gradients (``memory_analysis``) and the
median step time:

  python experiments/benchmarks/contrastive_loss.py --devices 2,4,8 --batches 64,256 --dim 256

GPU mode times a full SigLIP B/16 training step (224 px, bf16, AdamW) and the image tower alone
on one accelerator; it needs neither grain nor tfds:

  python experiments/benchmarks/contrastive_loss.py --mode gpu --batches 256
  python experiments/benchmarks/contrastive_loss.py --mode gpu --batches 2 --preset Ti/16 \
      --image-size 64 --attention xla --iters 1     # a dry run of the GPU path on a CPU

A script that prints a table, not a timed test. Import nothing from jax before the flags are set.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

LOSSES = ("chunked_sigmoid", "allgather_sigmoid", "allgather_softmax")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--devices", default="1,2,4,8", help="device counts (cpu mode)")
    p.add_argument("--batches", default="64,256", help="per-device batch sizes")
    p.add_argument("--dim", type=int, default=256, help="embedding width (cpu mode)")
    p.add_argument("--iters", type=int, default=5, help="timed iterations after one warm-up")
    p.add_argument("--attention", default="cudnn", help="gpu mode: auto | cudnn | xla")
    p.add_argument("--preset", default="B/16", help="gpu mode: ViT preset of both towers")
    p.add_argument("--image-size", type=int, default=224, help="gpu mode: image side in pixels")
    return p.parse_args(argv)


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def _time(fn, *args, iters: int) -> float:
    """Median seconds per call after one warm-up (blocking on the outputs)."""
    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ----------------------------------------------------------------------------------------------
# CPU: the three losses on fake devices
# ----------------------------------------------------------------------------------------------


def loss_case(name, d, n, dim):
    """Returns (jitted loss+grad fn, sharded args) for ``d`` devices of ``n`` rows each."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    from jaxmodels.losses import contrastive as C

    mesh = jax.make_mesh((d,), ("data",), (AxisType.Explicit,), devices=jax.devices()[:d])
    fn = {
        "chunked_sigmoid": C.chunked_sigmoid_loss,
        "allgather_sigmoid": C.allgather_sigmoid_loss,
        "allgather_softmax": lambda zi, zt, tp, b, **kw: C.allgather_softmax_loss(zi, zt, tp, **kw),
    }[name]
    grad = jax.jit(jax.value_and_grad(lambda *a: fn(*a, mesh=mesh), argnums=(0, 1, 2, 3)))
    shard, rep = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, n * d, dim)).astype(np.float32)
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    args = (
        jax.device_put(z[0], shard),
        jax.device_put(z[1], shard),
        jax.device_put(jnp.float32(np.log(10.0)), rep),
        jax.device_put(jnp.float32(-10.0), rep),
    )
    return grad, args


def run_cpu(args) -> None:
    devices, batches = _ints(args.devices), _ints(args.batches)
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={max(devices)}"
    )
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    print(f"jax {jax.__version__}, {jax.device_count()} fake {jax.devices()[0].platform} devices")
    print(f"value_and_grad of each loss, embedding width {args.dim}, float32")
    head = f"{'loss':<18} {'devices':>7} {'n/dev':>6} {'global':>7} {'temp MiB/dev':>12} "
    print(head + f"{'args+out MiB':>12} {'step ms':>9}")
    for n in batches:
        for name in LOSSES:
            for d in devices:
                fn, xs = loss_case(name, d, n, args.dim)
                mem = fn.lower(*xs).compile().memory_analysis()
                io = (mem.argument_size_in_bytes + mem.output_size_in_bytes) / 2**20
                ms = 1e3 * _time(fn, *xs, iters=args.iters)
                print(
                    f"{name:<18} {d:>7} {n:>6} {n * d:>7} {mem.temp_size_in_bytes / 2**20:>12.2f} "
                    f"{io:>12.2f} {ms:>9.2f}",
                    flush=True,
                )


# ----------------------------------------------------------------------------------------------
# GPU: SigLIP B/16 training step
# ----------------------------------------------------------------------------------------------


def siglip_config(attention: str, preset: str = "B/16", image_size: int = 224):
    """SigLIP B/16 (Zhai et al., 2023): ViT-B/16 MAP + B text tower, 64 tokens, 32k vocab, on
    ``image_size`` px images."""
    from jaxmodels.layers.vit import decode_preset

    size = decode_preset(preset)
    import ml_collections

    from jaxmodels.config import base_config

    c = base_config()
    m = c.model
    m.variant, m.loss_impl, m.embed_dim = "siglip", "chunked", size["width"]
    m.t_prime_init, m.b_init = 2.302585, -10.0
    m.attention_impl = attention
    m.remat_policy, m.scan_layers = "none", False
    m.image = ml_collections.ConfigDict(dict(preset=preset, posemb="learn", pool="map"))
    m.text = ml_collections.ConfigDict(
        dict(
            vocab_size=32_000,
            width=size["width"],
            depth=size["depth"],
            mlp_dim=size["mlp_dim"],
            num_heads=size["num_heads"],
            max_len=64,
            pool="last",
            causal=False,
        )
    )
    c.data.image_size = image_size
    c.train.compute_dtype = "bfloat16"
    return c


def time_siglip_step(model, loss, tx, n: int, iters: int, px: int, parts=("full", "tower")):
    """Seconds per full two-tower AdamW step (``"full"``) and per image-tower fwd+bwd
    (``"tower"``) at batch ``n``, for the ``parts`` asked for."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from jaxmodels.models.contrastive.model import TwoTowers

    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 255, size=(n, px, px, 3), dtype=np.uint8))
    tokens = jnp.asarray(rng.integers(1, 32_000, size=(n, 64)), jnp.int32)
    lengths = jnp.asarray(rng.integers(16, 65, size=(n,)), jnp.int32)  # padded captions
    init = jax.jit(lambda k: model.init(k, images[:1], tokens[:1], lengths[:1])["params"])
    params = nn_unbox(init(jax.random.key(0)))

    def step(state, images, tokens, lengths):
        params, opt_state = state
        value, grads = jax.value_and_grad(
            lambda p: loss(*model.apply({"params": p}, images, tokens, lengths))
        )(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    def tower(params, images):
        embed = lambda p: model.apply({"params": p}, images, method=TwoTowers.encode_image)
        return jax.grad(lambda p: jnp.sum(embed(p).astype(jnp.float32)))(params)

    full = jax.jit(step, donate_argnums=(0,))
    box, out = [(params, None)], {}
    if "full" in parts:
        box[0] = (params, tx.init(params))

        def run_full(*batch):
            box[0], value = full(box[0], *batch)
            return value

        out["full"] = _time(run_full, images, tokens, lengths, iters=iters)
    if "tower" in parts:
        out["tower"] = _time(jax.jit(tower), box[0][0], images, iters=iters)
    return out


def nn_unbox(tree):
    import flax.linen as nn

    return nn.meta.unbox(tree)


def run_gpu(args) -> None:
    import jax
    import optax
    from jax.sharding import AxisType

    from jaxmodels.models.contrastive import model as contrastive_model
    from jaxmodels.models.contrastive import task as contrastive_task

    print(f"jax {jax.__version__}, device: {jax.devices()[0].device_kind}")
    config = siglip_config(args.attention, args.preset, args.image_size)
    model = contrastive_model.make_model(config)
    mesh = jax.make_mesh((1, 1, 1), ("data", "fsdp", "tensor"), (AxisType.Auto,) * 3)
    loss = contrastive_task.make_loss(config, mesh)
    tx = optax.adamw(1e-4, weight_decay=1e-4)
    with jax.set_mesh(mesh):
        for n in _ints(args.batches):
            t = time_siglip_step(model, loss, tx, n, args.iters, args.image_size)
            t_full, t_tower = t["full"], t["tower"]
            print(
                f"SigLIP {args.preset} {args.image_size}px bf16 batch {n} ({args.attention} "
                f"attention): full two-tower "
                f"step {t_full * 1e3:.1f} ms ({n / t_full:.0f} pairs/s); image tower fwd+bwd "
                f"{t_tower * 1e3:.1f} ms ({n / t_tower:.0f} images/s)",
                flush=True,
            )


def main(argv=None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    run_cpu(args) if args.mode == "cpu" else run_gpu(args)


if __name__ == "__main__":
    main()
