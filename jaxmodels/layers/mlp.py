"""Position-wise feed-forward blocks with logical axis names ``(embed, mlp)``.

``swiglu``/``geglu`` are the gated units of Shazeer 2020 ("GLU Variants Improve Transformer",
eq. 5-6): ``FFN(x) = (act(x W) * x V) W2``; ``gelu``/``gelu_tanh``/``relu`` are the
two-matrix MLP of Vaswani et al. 2017 (eq. 2) with the given activation. ``fused=True`` computes
a gated unit's ``x W`` and ``x V`` with one matmul (param ``gate_up``, see :func:`fuse_gate_up`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.layers.attention.module import Projection

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


def fuse_gate_up(gate: jax.Array, up: jax.Array) -> jax.Array:
    """``[..., F]`` twice -> ``[..., 2, F]`` (gate, then up): a kernel ``[E, F]`` becomes
    ``[E, 2, F]``, a bias ``[2, F]``. The ``mlp`` axis stays last, so tensor parallelism gives
    each device the gate and up columns of the same hidden units, as it does unfused."""
    return jnp.stack([gate, up], axis=-2)


def split_gate_up(gate_up: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The inverse of :func:`fuse_gate_up`: ``[..., 2, F]`` -> gate ``[..., F]``, up."""
    return gate_up[..., 0, :], gate_up[..., 1, :]


def _gate_up_init(init: Callable) -> Callable:
    """Initialises the flat ``[E, 2 F]`` fused kernel as two separate ``init([E, F])``."""

    def f(key, shape, dtype=jnp.float32):
        E, F = shape[0], shape[1] // 2
        k_gate, k_up = jax.random.split(key)
        return fuse_gate_up(init(k_gate, (E, F), dtype), init(k_up, (E, F), dtype)).reshape(shape)

    return f


class MLP(nn.Module):
    """Feed-forward block; ``activation`` is ``swiglu``/``geglu`` (gated) or an ungated name."""

    d_ff: int
    activation: str = "swiglu"
    use_bias: bool = False
    dropout_rate: float = 0.0
    fused: bool = False  # gated: one projection for gate and up (param "gate_up")
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
        if self.activation in GATED and self.fused:
            kw["kernel_init"] = _gate_up_init(self.kernel_init)
            names = ("embed", "gate_up", "mlp")
            gate_up = Projection((2, self.d_ff), names, name="gate_up", **kw)(x_BxLxE)
            gate, up = split_gate_up(gate_up)
            h_BxLxF = act(gate) * up
        elif self.activation in GATED:
            up = dense(self.d_ff, ("embed", "mlp"), name="up", **kw)(x_BxLxE)
            gate = dense(self.d_ff, ("embed", "mlp"), name="gate", **kw)(x_BxLxE)
            h_BxLxF = act(gate) * up
        else:
            h_BxLxF = act(dense(self.d_ff, ("embed", "mlp"), name="up", **kw)(x_BxLxE))
        h_BxLxF = nn.with_logical_constraint(h_BxLxF, ("batch", "length", "mlp"))
        h_BxLxF = nn.Dropout(self.dropout_rate)(h_BxLxF, deterministic=deterministic)
        return dense(x_BxLxE.shape[-1], ("mlp", "embed"), name="down", **kw)(h_BxLxF)
