"""Rotary encodings: RoPE (Su et al. 2021) and xPos (Sun et al. 2022), applied to q and k.

RoPE (RoFormer eq. 34): rotate each pair of query/key features by an angle ``position *
theta_i`` with ``theta_i = base ** (-2i / d)``, so ``<R_m q, R_n k>`` depends on ``n - m`` only.
Two pair layouts exist in the wild: ``"interleaved"`` pairs (x0, x1), (x2, x3)... as in
RoFormer, and ``"half"`` pairs (x_i, x_{i + d/2}) as in GPT-NeoX/Llama. The frequencies and
their scalings are in ``rope_scaling``; :func:`rotate_qk` is what attention layers call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmodels.layers.positions.options import PositionOptions
from jaxmodels.layers.positions.rope_scaling import scaled_rope_inv_freq


def apply_rope(
    x_BxLxNxD: jax.Array,
    positions_BxL: jax.Array,
    inv_freq: jax.Array,
    *,
    layout: str = "half",
) -> jax.Array:
    """Rotates the first ``2 * len(inv_freq)`` features of ``x`` by ``positions * inv_freq``.

    Features beyond the rotary dimension (partial rotary) pass through unchanged. Angles are
    computed in float32 and the result is cast back to ``x.dtype``. ``I = len(inv_freq)`` (a
    letter beyond the shape legend) counts the rotary frequencies theta_i.
    """
    rot = 2 * inv_freq.shape[0]
    x_rot, x_pass = x_BxLxNxD[..., :rot], x_BxLxNxD[..., rot:]
    angles_BxLxI = positions_BxL[..., None].astype(jnp.float32) * inv_freq
    cos, sin = jnp.cos(angles_BxLxI)[:, :, None, :], jnp.sin(angles_BxLxI)[:, :, None, :]
    xf = x_rot.astype(jnp.float32)
    if layout == "half":
        x1, x2 = xf[..., : rot // 2], xf[..., rot // 2 :]
        out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    elif layout == "interleaved":
        x1, x2 = xf[..., 0::2], xf[..., 1::2]
        out = jnp.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).reshape(xf.shape)
    else:
        raise ValueError(f"rope layout must be 'half' or 'interleaved', got {layout!r}")
    return jnp.concatenate([out.astype(x_BxLxNxD.dtype), x_pass], axis=-1)


def xpos_zeta(rotary_dim: int, gamma: float = 0.4) -> jax.Array:
    """xPos (Sun et al. 2022, eq. 11): zeta_i = (i / (d/2) + gamma) / (1 + gamma), i < d/2."""
    i = jnp.arange(0, rotary_dim, 2, dtype=jnp.float32)
    return (i / rotary_dim + gamma) / (1.0 + gamma)


def apply_xpos(
    q_BxLxNxD: jax.Array,
    k_BxLxKxD: jax.Array,
    q_positions_BxL: jax.Array,
    k_positions_BxL: jax.Array,
    inv_freq: jax.Array,
    *,
    gamma: float = 0.4,
    scale_base: float = 512.0,
    layout: str = "half",
) -> tuple[jax.Array, jax.Array]:
    """xPos (Sun et al. 2022, eq. 12): RoPE plus q scaled by zeta^(n/s) and k by zeta^(-m/s).

    The score then carries zeta^((n - m)/s), a function of the offset only. ``I``: rotary
    frequencies, as in :func:`apply_rope`.
    """
    zeta = xpos_zeta(2 * inv_freq.shape[0], gamma)

    def scaled(x, positions, sign):
        p = positions[..., None].astype(jnp.float32) / scale_base
        s_BxLxI = zeta ** (sign * p)
        s = jnp.repeat(s_BxLxI, 2, axis=-1) if layout == "interleaved" else jnp.tile(s_BxLxI, 2)
        rot = s.shape[-1]
        xf = x[..., :rot].astype(jnp.float32) * s[:, :, None, :]
        x = jnp.concatenate([xf.astype(x.dtype), x[..., rot:]], axis=-1)
        return apply_rope(x, positions, inv_freq, layout=layout)

    return scaled(q_BxLxNxD, q_positions_BxL, 1.0), scaled(k_BxLxKxD, k_positions_BxL, -1.0)


def rotary_inv_freq(
    position: PositionOptions, head_dim: int, seq_len: int
) -> tuple[jax.Array, float]:
    """``(theta, attention_factor)`` for ``position``'s rotated dims (``rotary_fraction``).

    Dynamic NTK uses ``seq_len`` (the static query length) when its options give none.
    """
    rot = int(head_dim * position.rotary_fraction) // 2 * 2
    scaling = dict(position.rope_scaling)
    if scaling.get("type") == "dynamic":
        scaling.setdefault("seq_len", seq_len)
    return scaled_rope_inv_freq(rot, position.rope_base, scaling)


def rotate_qk(
    q_BxTxNxD: jax.Array,
    k_BxTxKxD: jax.Array,
    positions_BxT: jax.Array,
    position: PositionOptions,
) -> tuple[jax.Array, jax.Array]:
    """Applies RoPE (optionally scaled, ``position.rope_scaling``) or xPos to q and k.

    The scaling's attention factor multiplies both q and k (cos and sin, as in HF), so logits
    scale by its square (YaRN's 1/t).
    """
    inv_freq, factor = rotary_inv_freq(position, q_BxTxNxD.shape[-1], q_BxTxNxD.shape[1])
    layout = position.rope_layout
    if position.name == "xpos":
        q, k = apply_xpos(
            q_BxTxNxD,
            k_BxTxKxD,
            positions_BxT,
            positions_BxT,
            inv_freq,
            gamma=position.xpos_gamma,
            scale_base=position.xpos_scale_base,
            layout=layout,
        )
    else:
        q = apply_rope(q_BxTxNxD, positions_BxT, inv_freq, layout=layout)
        k = apply_rope(k_BxTxKxD, positions_BxT, inv_freq, layout=layout)
    if factor != 1.0:
        q, k = (x * jnp.asarray(factor, x.dtype) for x in (q, k))
    return q, k
