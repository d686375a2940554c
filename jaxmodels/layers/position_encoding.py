"""Position encodings selected by name, for models that take a ``position`` config option.

Names (``POSITIONS``): ``none`` (NoPE), ``learned`` and ``sinusoidal`` (absolute, added to the
token embeddings), ``shaw`` (relative key/value embeddings inside each attention layer),
``t5`` (bucketed relative bias shared by all layers), ``alibi`` (fixed linear bias), ``rope``
(rotary, with optional scaling) and ``xpos`` (rotary with an exponential decay).

A model asks three questions of its :class:`PositionOptions`: what to add to the embeddings
(:class:`AbsolutePositions`), what bias to add to the attention logits
(:class:`RelativePositionBias`) and which options its attention layers take
(:meth:`PositionOptions.attention_kwargs`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.layers import relative
from jaxmodels.layers.positions import (
    LearnedPositionEmbedding,
    apply_rope,
    apply_xpos,
    sinusoidal_embedding,
)
from jaxmodels.layers.rope_scaling import ROPE_SCALINGS, scaled_rope_inv_freq

POSITIONS = ("none", "learned", "sinusoidal", "shaw", "t5", "alibi", "rope", "xpos")


@dataclasses.dataclass(frozen=True)
class PositionOptions:
    """A position encoding and its options (hashable, so linen modules can hold it)."""

    name: str = "rope"  # one of POSITIONS
    max_len: int = 2048  # learned table size (positions beyond it are clipped)
    rope_base: float = 10000.0  # RoPE/xPos base theta
    rotary_fraction: float = 1.0  # fraction of head_dim rotated (partial rotary)
    rope_layout: str = "half"  # "half" (Llama) or "interleaved" (RoFormer)
    rope_scaling: tuple[tuple[str, Any], ...] = ()  # items of {"type": ..., **options}
    xpos_scale_base: float = 512.0  # xPos scale base (Sun et al. 2022)
    xpos_gamma: float = 0.4  # xPos gamma
    shaw_max_distance: int = 16  # Shaw clipping distance k
    t5_num_buckets: int = 32  # T5 buckets
    t5_max_distance: int = 128  # T5 max distance

    def __post_init__(self):
        if self.name not in POSITIONS:
            raise ValueError(f"position={self.name!r} is unknown; choose one of {POSITIONS}")
        kind = dict(self.rope_scaling).get("type", "none")
        if kind not in ROPE_SCALINGS:
            raise ValueError(f"rope_scaling type {kind!r} is unknown; one of {ROPE_SCALINGS}")
        if self.rope_layout not in ("half", "interleaved"):
            raise ValueError(f"rope_layout must be 'half' or 'interleaved': {self.rope_layout!r}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> PositionOptions:
        """Builds options from a config dict (``rope_scaling`` may be a dict); unknown keys fail."""
        cfg = dict(cfg)
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg) - fields)
        if unknown:
            raise ValueError(f"unknown position option(s) {unknown}; known: {sorted(fields)}")
        scaling = cfg.get("rope_scaling") or {}
        cfg["rope_scaling"] = tuple(sorted(dict(scaling).items()))
        return cls(**cfg)

    def with_scaling(self, scaling: Mapping[str, Any] | None) -> PositionOptions:
        """The same options with another RoPE scaling (e.g. at inference on longer inputs)."""
        return dataclasses.replace(self, rope_scaling=tuple(sorted(dict(scaling or {}).items())))

    def attention_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``MultiHeadAttention`` (and the same fields of ``BlockConfig``)."""
        rotary = self.name in ("rope", "xpos")
        return dict(
            rope=rotary,
            rope_base=self.rope_base,
            rotary_fraction=self.rotary_fraction,
            rope_layout=self.rope_layout,
            rope_scaling=self.rope_scaling if rotary else (),
            xpos_scale_base=self.xpos_scale_base if self.name == "xpos" else 0.0,
            xpos_gamma=self.xpos_gamma,
            shaw_max_distance=self.shaw_max_distance if self.name == "shaw" else 0,
        )


class AbsolutePositions(nn.Module):
    """Returns the absolute embedding to add to the tokens, or None for non-absolute encodings."""

    options: PositionOptions
    features: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, positions_BxL: jax.Array) -> jax.Array | None:
        if self.options.name == "sinusoidal":
            return sinusoidal_embedding(positions_BxL, self.features).astype(self.dtype)
        if self.options.name == "learned":
            return LearnedPositionEmbedding(
                self.options.max_len, self.features, self.dtype, self.param_dtype, name="table"
            )(positions_BxL)
        return None


class RelativePositionBias(nn.Module):
    """Returns the additive ``BxHxQxK`` logit bias of T5 or ALiBi, or None for other encodings."""

    options: PositionOptions
    num_heads: int
    causal: bool
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, q_positions_BxQ: jax.Array, k_positions_BxK: jax.Array) -> jax.Array | None:
        if self.options.name == "alibi":
            slopes = relative.alibi_slopes(self.num_heads)
            return relative.alibi_bias(slopes, q_positions_BxQ, k_positions_BxK).astype(self.dtype)
        if self.options.name == "t5":
            return relative.T5RelativeBias(
                self.num_heads,
                bidirectional=not self.causal,
                num_buckets=self.options.t5_num_buckets,
                max_distance=self.options.t5_max_distance,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name="t5",
            )(q_positions_BxQ, k_positions_BxK)
        return None


def rotate_qk(
    q_BxTxNxH: jax.Array,
    k_BxTxKxH: jax.Array,
    positions_BxT: jax.Array,
    *,
    rope_base: float = 10000.0,
    rotary_fraction: float = 1.0,
    rope_layout: str = "half",
    rope_scaling: tuple[tuple[str, Any], ...] = (),
    xpos_scale_base: float = 0.0,
    xpos_gamma: float = 0.4,
) -> tuple[jax.Array, jax.Array]:
    """Applies RoPE (optionally scaled, see ``rope_scaling``) or xPos to q and k.

    The scaling's attention factor multiplies both q and k (cos and sin, as in HF), so logits
    scale by its square (YaRN's 1/t). Dynamic NTK uses the static query length when no
    ``seq_len`` option is given.
    """
    H = q_BxTxNxH.shape[-1]
    rot = int(H * rotary_fraction) // 2 * 2
    scaling = dict(rope_scaling)
    if scaling.get("type") == "dynamic":
        scaling.setdefault("seq_len", q_BxTxNxH.shape[1])
    inv_freq, factor = scaled_rope_inv_freq(rot, rope_base, scaling)
    if xpos_scale_base > 0:
        q, k = apply_xpos(
            q_BxTxNxH,
            k_BxTxKxH,
            positions_BxT,
            positions_BxT,
            inv_freq,
            gamma=xpos_gamma,
            scale_base=xpos_scale_base,
            layout=rope_layout,
        )
    else:
        q = apply_rope(q_BxTxNxH, positions_BxT, inv_freq, layout=rope_layout)
        k = apply_rope(k_BxTxKxH, positions_BxT, inv_freq, layout=rope_layout)
    if factor != 1.0:
        q, k = (x * jnp.asarray(factor, x.dtype) for x in (q, k))
    return q, k
