"""The MLP classifier of the template family."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

NUM_CLASSES = 10


def _dense(features: int, axes: tuple[str | None, str | None], dtype) -> nn.Dense:
    init = nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes)
    return nn.Dense(features, dtype=dtype, kernel_init=init)


class MLP(nn.Module):
    """``depth`` hidden ReLU layers of ``width`` units with dropout, then a linear classifier."""

    width: int = 256
    depth: int = 2
    dropout_rate: float = 0.1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxE: jax.Array, *, train: bool) -> jax.Array:
        h = _dense(self.width, (None, "mlp"), self.dtype)(x_BxE.astype(self.dtype))
        for _ in range(self.depth - 1):
            h = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(h))
            h = nn.with_logical_constraint(h, ("batch", "mlp"))
            h = _dense(self.width, ("embed", "mlp"), self.dtype)(h)
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(h))
        logits = _dense(NUM_CLASSES, ("mlp", "classes"), self.dtype)(h)
        return logits.astype(jnp.float32)
