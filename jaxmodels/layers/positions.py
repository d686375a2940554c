"""Absolute position encodings and RoPE/xPos (relative ones live in ``relative.py``).

RoPE (Su et al. 2021, "RoFormer", eq. 34): rotate each pair of query/key features by an angle
``position * theta_i`` with ``theta_i = base ** (-2i / d)``, so ``<R_m q, R_n k>`` depends on
``n - m`` only. Two pair layouts exist in the wild: ``"interleaved"`` pairs (x0, x1), (x2, x3)...
as in RoFormer, and ``"half"`` pairs (x_i, x_{i + d/2}) as in GPT-NeoX/Llama.
"""

from __future__ import annotations

import flax.linen as nn
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


def sinusoidal_embedding(positions: jax.Array, features: int, base: float = 10000.0) -> jax.Array:
    """Vaswani et al. 2017 sec. 3.5: PE[p, 2i] = sin(p / base^(2i/d)), PE[p, 2i+1] = cos(same)."""
    if features % 2:
        raise ValueError(f"sinusoidal embedding needs an even feature size, got {features}")
    angles = positions[..., None].astype(jnp.float32) * rope_inv_freq(features, base)
    return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(*angles.shape[:-1], -1)


class LearnedPositionEmbedding(nn.Module):
    """Learned absolute position embeddings (BERT/GPT-2): a ``num_positions x features`` table."""

    num_positions: int
    features: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, positions_BxL: jax.Array) -> jax.Array:
        table = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed")),
            (self.num_positions, self.features),
            self.param_dtype,
        )
        return jnp.take(table, positions_BxL, axis=0, mode="clip").astype(self.dtype)


def xpos_zeta(rotary_dim: int, gamma: float = 0.4) -> jax.Array:
    """xPos (Sun et al. 2022, eq. 11): zeta_i = (i / (d/2) + gamma) / (1 + gamma), i < d/2."""
    i = jnp.arange(0, rotary_dim, 2, dtype=jnp.float32)
    return (i / rotary_dim + gamma) / (1.0 + gamma)


def apply_xpos(
    q_BxLxHxD: jax.Array,
    k_BxLxHxD: jax.Array,
    q_positions_BxL: jax.Array,
    k_positions_BxL: jax.Array,
    inv_freq: jax.Array,
    *,
    gamma: float = 0.4,
    scale_base: float = 512.0,
    layout: str = "half",
) -> tuple[jax.Array, jax.Array]:
    """xPos (Sun et al. 2022, eq. 12): RoPE plus q scaled by zeta^(n/s) and k by zeta^(-m/s).

    The score then carries zeta^((n - m)/s), a function of the offset only.
    """
    zeta = xpos_zeta(2 * inv_freq.shape[0], gamma)

    def scaled(x, positions, sign):
        p = positions[..., None].astype(jnp.float32) / scale_base
        s_BxLxF = zeta ** (sign * p)
        s = jnp.repeat(s_BxLxF, 2, axis=-1) if layout == "interleaved" else jnp.tile(s_BxLxF, 2)
        rot = s.shape[-1]
        xf = x[..., :rot].astype(jnp.float32) * s[:, :, None, :]
        x = jnp.concatenate([xf.astype(x.dtype), x[..., rot:]], axis=-1)
        return apply_rope(x, positions, inv_freq, layout=layout)

    return scaled(q_BxLxHxD, q_positions_BxL, 1.0), scaled(k_BxLxHxD, k_positions_BxL, -1.0)
