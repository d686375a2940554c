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
    """``num_layers`` hidden ReLU layers with dropout, then a linear classifier."""

    hidden: int = 256
    num_layers: int = 2
    dropout: float = 0.1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxE: jax.Array, *, train: bool) -> jax.Array:
        h = _dense(self.hidden, (None, "mlp"), self.dtype)(x_BxE.astype(self.dtype))
        for _ in range(self.num_layers - 1):
            h = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(h))
            h = nn.with_logical_constraint(h, ("batch", "mlp"))
            h = _dense(self.hidden, ("embed", "mlp"), self.dtype)(h)
        h = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(h))
        logits = _dense(NUM_CLASSES, ("mlp", "classes"), self.dtype)(h)
        return logits.astype(jnp.float32)
