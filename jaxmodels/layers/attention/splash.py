"""Pallas TPU splash attention (``jax.experimental.pallas.ops.tpu``), per shard under a mesh.

Causal and segment-id masks are handled inside the kernel (fully masked blocks are skipped);
a multi-device mesh runs it through ``jax.shard_map`` with batch and heads sharded as the
active logical rules say (attention is independent per row and per head, so no communication).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

SPLASH_BLOCK = 128  # lengths must be multiples of the kernel's block


def splash_available() -> str | None:
    """Returns why the splash kernel cannot be imported here, or None."""
    try:
        from jax.experimental.pallas.ops.tpu.splash_attention import (  # noqa: F401
            splash_attention_kernel,
        )
    except ImportError as e:
        return f"splash kernel unavailable ({e})"
    return None


def _splash_local(q_BxTxNxD, k_BxSxKxD, v_BxSxKxD, q_seg_BxT, kv_seg_BxS, *, causal, scale):
    """Splash attention on local arrays, vmapped over the batch (queries pre-scaled)."""
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_kernel as sk,
    )
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_mask as sm,
    )

    T, N, S = q_BxTxNxD.shape[1], q_BxTxNxD.shape[2], k_BxSxKxD.shape[1]
    head_mask = sm.CausalMask((T, S)) if causal else sm.FullMask((T, S))
    kernel = sk.make_splash_mha(sm.MultiHeadMask([head_mask] * N), head_shards=1, q_seq_shards=1)
    q = jnp.swapaxes(q_BxTxNxD * scale, 1, 2)
    k, v = jnp.swapaxes(k_BxSxKxD, 1, 2), jnp.swapaxes(v_BxSxKxD, 1, 2)

    def one(q1, k1, v1, qs, ks):
        return kernel(q1, k1, v1, segment_ids=sk.SegmentIds(q=qs, kv=ks))

    return jnp.swapaxes(jax.vmap(one)(q, k, v, q_seg_BxT, kv_seg_BxS), 1, 2)


def splash_attention(
    q_BxTxNxD: jax.Array,
    k_BxSxKxD: jax.Array,
    v_BxSxKxD: jax.Array,
    *,
    causal: bool,
    q_segment_ids: jax.Array | None,
    kv_segment_ids: jax.Array | None,
    scale: float,
    local=None,
) -> jax.Array:
    """Splash attention; under a multi-device mesh it runs per shard through ``shard_map``.

    Missing segment ids mean one segment; ``local`` replaces the Pallas kernel (tests).
    """
    B, T = q_BxTxNxD.shape[:2]
    ones = jnp.ones((B, T), jnp.int32)
    q_seg = ones if q_segment_ids is None else q_segment_ids.astype(jnp.int32)
    kv_seg = q_seg if kv_segment_ids is None else kv_segment_ids.astype(jnp.int32)
    fn = functools.partial(local or _splash_local, causal=causal, scale=scale)
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return fn(q_BxTxNxD, k_BxSxKxD, v_BxSxKxD, q_seg, kv_seg)
    spec = nn.logical_to_mesh_axes
    q_spec = spec(("batch", "length", "heads", "head_dim"))
    kv_spec = spec(("batch", "length", "kv_heads", "head_dim"))
    seg_spec = spec(("batch", "length"))
    sharded = jax.shard_map(
        fn,
        mesh=mesh,
        in_specs=(q_spec, kv_spec, kv_spec, seg_spec, seg_spec),
        out_specs=q_spec,
        check_vma=False,
    )
    return sharded(q_BxTxNxD, k_BxSxKxD, v_BxSxKxD, q_seg, kv_seg)
