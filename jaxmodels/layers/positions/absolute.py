"""Absolute position encodings, added to the token embeddings: sinusoidal and learned."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.layers.positions.options import PositionOptions
from jaxmodels.layers.positions.rope_scaling import rope_inv_freq


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


class AbsolutePositions(nn.Module):
    """Returns the absolute embedding to add to the tokens, or None for non-absolute encodings."""

    position: PositionOptions
    features: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, positions_BxL: jax.Array) -> jax.Array | None:
        if self.position.name == "sinusoidal":
            return sinusoidal_embedding(positions_BxL, self.features).astype(self.dtype)
        if self.position.name == "learned":
            return LearnedPositionEmbedding(
                self.position.max_len, self.features, self.dtype, self.param_dtype, name="table"
            )(positions_BxL)
        return None
