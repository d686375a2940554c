"""Position encodings.

RoPE (Su et al. 2021, "RoFormer", eq. 34): rotate each pair of query/key features by an angle
``position * theta_i`` with ``theta_i = base ** (-2i / d)``, so ``<R_m q, R_n k>`` depends on
``n - m`` only. Two pair layouts exist in the wild: ``"interleaved"`` pairs (x0, x1), (x2, x3)...
as in RoFormer, and ``"half"`` pairs (x_i, x_{i + d/2}) as in GPT-NeoX/Llama.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def rope_inv_freq(rotary_dim: int, base: float = 10000.0) -> jax.Array:
    """Returns theta_i = base^(-2i/d) for i < d/2 (RoFormer eq. 15), in float32."""
    if rotary_dim % 2:
        raise ValueError(f"rotary_dim must be even, got {rotary_dim}")
    return base ** (-jnp.arange(0, rotary_dim, 2, dtype=jnp.float32) / rotary_dim)


def apply_rope(
    x_BxLxHxD: jax.Array,
    positions_BxL: jax.Array,
    inv_freq: jax.Array,
    *,
    layout: str = "half",
) -> jax.Array:
    """Rotates the first ``2 * len(inv_freq)`` features of ``x`` by ``positions * inv_freq``.

    Features beyond the rotary dimension (partial rotary) pass through unchanged. Angles are
    computed in float32 and the result is cast back to ``x.dtype``.
    """
    rot = 2 * inv_freq.shape[0]
    x_rot, x_pass = x_BxLxHxD[..., :rot], x_BxLxHxD[..., rot:]
    angles_BxLxF = positions_BxL[..., None].astype(jnp.float32) * inv_freq
    cos, sin = jnp.cos(angles_BxLxF)[:, :, None, :], jnp.sin(angles_BxLxF)[:, :, None, :]
    xf = x_rot.astype(jnp.float32)
    if layout == "half":
        x1, x2 = xf[..., : rot // 2], xf[..., rot // 2 :]
        out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    elif layout == "interleaved":
        x1, x2 = xf[..., 0::2], xf[..., 1::2]
        out = jnp.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).reshape(xf.shape)
    else:
        raise ValueError(f"rope layout must be 'half' or 'interleaved', got {layout!r}")
    return jnp.concatenate([out.astype(x_BxLxHxD.dtype), x_pass], axis=-1)
