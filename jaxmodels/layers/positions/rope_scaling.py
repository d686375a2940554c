"""RoPE frequencies theta_i (RoFormer eq. 15) and their scalings for context extension, by name.

Each scaling function returns ``(inv_freq, attention_factor)``: the rotary frequencies theta_i and a
factor that multiplies cos/sin (so it scales attention logits by its square; 1 except YaRN).

- ``"linear"``: position interpolation (Chen et al. 2023, eq. 3): theta_i / s.
- ``"ntk"``: NTK-aware scaling (bloc97 2023; YaRN paper eq. 14): base' = base * s^(d/(d-2)).
- ``"dynamic"``: dynamic NTK (YaRN paper sec. 3.3): the NTK base for the current length.
- ``"yarn"``: NTK-by-parts ramp between interpolation and extrapolation plus the attention
  temperature sqrt(1/t) = 0.1 ln(s) + 1 (Peng et al. 2023, eqs. 17-22).
- ``"llama3"``: Llama 3.1 (Meta 2024): low frequencies divided by s, high kept, smooth between.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

ROPE_SCALINGS = ("none", "linear", "ntk", "dynamic", "yarn", "llama3")


def rope_inv_freq(rotary_dim: int, base: float = 10000.0) -> jax.Array:
    """Returns theta_i = base^(-2i/d) for i < d/2 (RoFormer eq. 15), in float32."""
    if rotary_dim % 2:
        raise ValueError(f"rotary_dim must be even, got {rotary_dim}")
    return base ** (-jnp.arange(0, rotary_dim, 2, dtype=jnp.float32) / rotary_dim)


def linear_inv_freq(dim: int, base: float, *, factor: float) -> jax.Array:
    """Position interpolation (Chen et al. 2023): m -> m / s, i.e. theta_i / s."""
    return rope_inv_freq(dim, base) / factor


def ntk_inv_freq(dim: int, base: float, *, factor: float) -> jax.Array:
    """NTK-aware scaling: base' = base * s^(d / (d - 2)) (YaRN paper eq. 14)."""
    return rope_inv_freq(dim, base * factor ** (dim / (dim - 2)))


def dynamic_ntk_inv_freq(
    dim: int, base: float, *, factor: float, seq_len: int, max_position_embeddings: int
) -> jax.Array:
    """Dynamic NTK: base' = base * (s * L / L_train - (s - 1))^(d/(d-2)) for L > L_train."""
    seq_len = max(seq_len, max_position_embeddings)
    scale = factor * seq_len / max_position_embeddings - (factor - 1)
    return rope_inv_freq(dim, base * scale ** (dim / (dim - 2)))


def yarn_attention_factor(factor: float, mscale: float = 1.0) -> float:
    """YaRN eq. 22: sqrt(1/t) = 0.1 * mscale * ln(s) + 1 (1 for s <= 1)."""
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def yarn_inv_freq(
    dim: int,
    base: float,
    *,
    factor: float,
    original_max_position_embeddings: int,
    beta_fast: float = 32.0,
    beta_slow: float = 1.0,
    truncate: bool = True,
) -> jax.Array:
    """YaRN NTK-by-parts (eqs. 17-20): ramp gamma(r), r = L / lambda_d in [beta_slow, beta_fast].

    The ramp runs over dimension indices, as in the reference code: the index whose wavelength
    completes r rotations in L is d * ln(L / (2 pi r)) / (2 ln base).
    """

    def correction_dim(rotations: float) -> float:
        return (
            dim
            * math.log(original_max_position_embeddings / (rotations * 2 * math.pi))
            / (2 * math.log(base))
        )

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    high = high + 0.001 if low == high else high
    ramp = jnp.clip((jnp.arange(dim // 2, dtype=jnp.float32) - low) / (high - low), 0.0, 1.0)
    extrapolate = 1.0 - ramp  # gamma: 1 keeps theta_d, 0 interpolates theta_d / s
    theta = rope_inv_freq(dim, base)
    return theta / factor * (1.0 - extrapolate) + theta * extrapolate


def llama3_inv_freq(
    dim: int,
    base: float,
    *,
    factor: float = 8.0,
    low_freq_factor: float = 1.0,
    high_freq_factor: float = 4.0,
    original_max_position_embeddings: int = 8192,
) -> jax.Array:
    """Llama 3.1: wavelength > L/low divided by s, < L/high kept, linear in L/wavelength between."""
    theta = rope_inv_freq(dim, base)
    wavelen = 2 * math.pi / theta
    old = original_max_position_embeddings
    low_wavelen, high_wavelen = old / low_freq_factor, old / high_freq_factor
    smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * theta / factor + smooth * theta
    out = jnp.where(wavelen > low_wavelen, theta / factor, theta)
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return jnp.where(medium, smoothed, out)


def scaled_rope_inv_freq(
    dim: int, base: float = 10000.0, scaling: Mapping[str, Any] | None = None
) -> tuple[jax.Array, float]:
    """Returns ``(inv_freq, attention_factor)`` for ``scaling = {"type": name, **options}``.

    ``None`` or ``{"type": "none"}`` gives plain RoPE. Options are the keyword arguments of the
    matching ``*_inv_freq`` function; YaRN also takes ``attention_factor`` (default eq. 22).
    """
    opts = dict(scaling or {})
    kind = opts.pop("type", "none")
    fns = {
        "linear": linear_inv_freq,
        "ntk": ntk_inv_freq,
        "dynamic": dynamic_ntk_inv_freq,
        "yarn": yarn_inv_freq,
        "llama3": llama3_inv_freq,
    }
    if kind == "none":
        if opts:
            raise ValueError(f"rope scaling 'none' takes no options, got {sorted(opts)}")
        return rope_inv_freq(dim, base), 1.0
    if kind not in fns:
        raise ValueError(f"rope scaling type {kind!r} is unknown; choose one of {ROPE_SCALINGS}")
    attention_factor = 1.0
    if kind == "yarn":
        attention_factor = opts.pop("attention_factor", None) or yarn_attention_factor(
            opts["factor"], opts.pop("mscale", 1.0)
        )
    try:
        return fns[kind](dim, base, **opts), attention_factor
    except TypeError as e:
        raise ValueError(f"bad options {sorted(opts)} for rope scaling {kind!r}: {e}") from e
