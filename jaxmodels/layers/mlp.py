"""Position-wise feed-forward blocks with logical axis names ``(embed, mlp)``.

``swiglu``/``geglu`` are the gated units of Shazeer 2020 ("GLU Variants Improve Transformer",
eq. 5-6): ``FFN(x) = (act(x W) * x V) W2``; ``gelu``/``gelu_tanh``/``relu`` are the
two-matrix MLP of Vaswani et al. 2017 (eq. 2) with the given activation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "silu": jax.nn.silu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
}
GATED = {"swiglu": "silu", "geglu": "gelu_tanh"}


def dense(
    features: int,
    names: tuple[str, str],
    *,
    use_bias: bool,
    dtype: Dtype,
    param_dtype: Dtype,
    kernel_init: Callable,
    name: str | None = None,
) -> nn.Dense:
    """Returns an ``nn.Dense`` whose kernel is named ``names`` and bias ``names[1:]``."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=nn.with_logical_partitioning(kernel_init, names),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, names[1:]),
        name=name,
    )


class MLP(nn.Module):
    """Feed-forward block; ``activation`` is ``swiglu``/``geglu`` (gated) or an ungated name."""

    d_ff: int
    activation: str = "swiglu"
    use_bias: bool = False
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernel_init: Callable = nn.initializers.xavier_uniform()

    @nn.compact
    def __call__(self, x_BxLxE: jax.Array, *, deterministic: bool = True) -> jax.Array:
        act_name = GATED.get(self.activation, self.activation)
        if act_name not in ACTIVATIONS:
            known = sorted([*GATED, *ACTIVATIONS])
            raise ValueError(f"mlp activation must be one of {known}, got {self.activation!r}")
        act = ACTIVATIONS[act_name]
        kw = dict(use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype)
        kw["kernel_init"] = self.kernel_init
        up = dense(self.d_ff, ("embed", "mlp"), name="up", **kw)(x_BxLxE)
        if self.activation in GATED:
            gate = dense(self.d_ff, ("embed", "mlp"), name="gate", **kw)(x_BxLxE)
            h_BxLxF = act(gate) * up
        else:
            h_BxLxF = act(up)
        h_BxLxF = nn.with_logical_constraint(h_BxLxF, ("batch", "length", "mlp"))
        h_BxLxF = nn.Dropout(self.dropout_rate)(h_BxLxF, deterministic=deterministic)
        return dense(x_BxLxE.shape[-1], ("mlp", "embed"), name="down", **kw)(h_BxLxF)
