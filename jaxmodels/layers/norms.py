"""Normalisation layers with logical axis names on their parameters.

Statistics are always computed in float32 whatever the compute dtype, and the result is cast to
``dtype``; parameters stay ``param_dtype`` (float32) and are named ``("embed",)`` so that FSDP
rules shard them like the rest of the model width.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


class RMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich 2019, eq. 4): ``x / sqrt(mean(x^2) + eps) * g``."""

    epsilon: float = 1e-6
    use_scale: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    axis_name: str = "embed"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        xf = x.astype(jnp.float32)
        y = xf * jax.lax.rsqrt(jnp.mean(jnp.square(xf), axis=-1, keepdims=True) + self.epsilon)
        if self.use_scale:
            init = nn.with_logical_partitioning(nn.initializers.ones, (self.axis_name,))
            g = self.param("scale", init, (x.shape[-1],), self.param_dtype)
            y = y * g.astype(jnp.float32)
        return y.astype(self.dtype)


class LayerNorm(nn.Module):
    """LayerNorm (Ba et al. 2016, eq. 15): ``(x - mean) / sqrt(var + eps) * g + b``."""

    epsilon: float = 1e-5
    use_scale: bool = True
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    axis_name: str = "embed"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        xf = x.astype(jnp.float32)
        mean = jnp.mean(xf, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
        y = (xf - mean) * jax.lax.rsqrt(var + self.epsilon)
        if self.use_scale:
            init = nn.with_logical_partitioning(nn.initializers.ones, (self.axis_name,))
            y = y * self.param("scale", init, (x.shape[-1],), self.param_dtype)
        if self.use_bias:
            init = nn.with_logical_partitioning(nn.initializers.zeros, (self.axis_name,))
            y = y + self.param("bias", init, (x.shape[-1],), self.param_dtype)
        return y.astype(self.dtype)


def make_norm(kind: str, *, epsilon: float | None = None, **kwargs) -> nn.Module:
    """Returns ``RMSNorm`` for ``kind="rmsnorm"`` or ``LayerNorm`` for ``"layernorm"``."""
    classes = {"rmsnorm": RMSNorm, "layernorm": LayerNorm}
    if kind not in classes:
        raise ValueError(f"norm must be one of {sorted(classes)}, got {kind!r}")
    if epsilon is not None:
        kwargs["epsilon"] = epsilon
    return classes[kind](**kwargs)
