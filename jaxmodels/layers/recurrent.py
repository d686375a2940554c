"""Recurrent blocks for ``lax.scan``: weights declared and cast once, cell math as pure functions.

A recurrent model declares its weights with :class:`DenseWeights` (logical axis names, float32
params), casts them to the compute dtype ONCE outside the scan, and runs a pure step function
over time with ``lax.scan``. The input-to-hidden part of every gate is hoisted out of the scan as
one large matmul over all frames; the gates of a cell come out of a single fused matmul.
Gate layouts follow PyTorch (LSTM: i, f, g, o; GRU: r, z, n), so weights copy across directly.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def torch_bias_init(fan_in: int):
    """PyTorch ``nn.Linear`` bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class DenseWeights(nn.Module):
    """Declares a dense layer's ``kernel`` (in x out) and ``bias`` and returns them in ``dtype``.

    Calling it casts the float32 params to the compute dtype; a model calls it once per forward
    pass, outside any scan, so the cast is not repeated per time step.
    """

    features_in: int
    features_out: int
    names: tuple[str | None, str | None] = ("embed", "mlp")
    use_bias: bool = True
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = None  # None: PyTorch's U(+-1/sqrt(fan_in))
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array | None]:
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(self.kernel_init, self.names),
            (self.features_in, self.features_out),
            self.param_dtype,
        )
        bias = None
        if self.use_bias:
            bias_init = self.bias_init or torch_bias_init(self.features_in)
            bias = self.param(
                "bias",
                nn.with_logical_partitioning(bias_init, (self.names[1],)),
                (self.features_out,),
                self.param_dtype,
            )
            bias = bias.astype(self.dtype)
        return kernel.astype(self.dtype), bias


def dense(weights, x: jax.Array) -> jax.Array:
    """y = x W + b with weights from :class:`DenseWeights` (already in the compute dtype), or
    weights that :func:`scan_weight_grads` taps."""
    if isinstance(weights, _Tapped):
        return weights.tape.dense(weights, x)
    kernel, bias = weights
    y = jnp.dot(x.astype(kernel.dtype), kernel)
    return y if bias is None else y + bias


def concat_dense(weights, xs: Sequence[jax.Array]) -> jax.Array:
    """One fused matmul of the concatenation [x_1; ...; x_n] (e.g. [input; h] for all gates)."""
    dtype = (weights.kernel if isinstance(weights, _Tapped) else weights[0]).dtype
    return dense(weights, jnp.concatenate([x.astype(dtype) for x in xs], axis=-1))


# ------------------------------------------------------------------ weight gradients of a scan


@dataclasses.dataclass(frozen=True)
class _Tapped:
    """A weight inside :func:`scan_weight_grads`'s step: :func:`dense` goes through the tape."""

    name: str
    kernel: jax.Array
    bias: jax.Array | None
    tape: _Tape


class _Tape:
    """The dense calls of one traced step, by weight name in call order: each call's input, and
    an additive zero probe on its output whose gradient is the output's gradient."""

    def __init__(self, probes: dict | None = None):
        self.probes, self.inputs, self.outputs = probes, {}, {}

    def dense(self, w: _Tapped, x: jax.Array) -> jax.Array:
        x = x.astype(w.kernel.dtype)
        y = jnp.dot(x, w.kernel)
        y = y if w.bias is None else y + w.bias
        calls = self.inputs.setdefault(w.name, [])
        if self.probes is not None:
            y = y + self.probes[w.name][len(calls)]
        calls.append(x)
        self.outputs.setdefault(w.name, []).append(y)
        return y

    def weights(self, weights: dict) -> dict:
        return {n: _Tapped(n, k, b, self) for n, (k, b) in weights.items()}


def scan_weight_grads(step, weights: dict, carry, xs):
    """``lax.scan(lambda c, x: step(weights, c, x), carry, xs)`` whose weight gradients are
    computed after the backward scan, once per weight, with float32 accumulation.

    Autodiff of a scan adds the gradient of every weight the step closes over into a
    weight-sized accumulator on each backward step: a read and a write of each weight per step
    (TRN: 64 frames x 8 decoder steps), summed in the weights' dtype (bfloat16 loses most of
    it). Here the backward scan computes only the recurrence: each dense call of the step on
    ``weights`` records its input ``x_t`` and adds a zero probe to its output ``y_t``, whose
    gradient the backward scan returns as ``dy_t`` for all steps at once; then
    ``dW = sum_t x_t^T dy_t`` and ``db = sum_t dy_t`` are one matmul and one sum per call,
    accumulated in float32 and rounded once to the weights' dtype.

    ``weights``: ``{name: (kernel, bias or None)}`` in the compute dtype (:class:`DenseWeights`);
    ``step(w, carry, x) -> (carry, y)`` must use ``w`` only through :func:`dense` and
    :func:`concat_dense`, and run no nested scan over them (unroll such a loop in Python). The
    carry is floating point; non-floating leaves of ``xs`` (dropout keys) get no gradient.
    """
    leaves, treedef = jax.tree.flatten(xs)
    diff = tuple(i for i, x in enumerate(leaves) if jnp.issubdtype(x.dtype, jnp.inexact))
    rest = tuple(i for i in range(len(leaves)) if i not in diff)

    def step_on_leaves(w, c, x):
        full = dict(zip(diff, x[0], strict=True)) | dict(zip(rest, x[1], strict=True))
        return step(w, c, treedef.unflatten([full[i] for i in range(len(leaves))]))

    pick = lambda idx: [leaves[i] for i in idx]  # noqa: E731
    return _scan_weight_grads(step_on_leaves, weights, carry, pick(diff), pick(rest))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _scan_weight_grads(step, weights, carry, xs, consts):
    """``xs``: the floating leaves of the scanned inputs; ``consts``: the others (no gradient)."""
    return jax.lax.scan(lambda c, x: step(weights, c, x), carry, (xs, consts))


def _scan_forward(step, weights, carry, xs, consts):
    def discover(c, x):
        tape = _Tape()
        step(tape.weights(weights), c, x)
        return tape.outputs

    first = jax.tree.map(lambda x: x[0], (xs, consts))
    length = jax.tree.leaves((xs, consts))[0].shape[0]
    shapes = jax.eval_shape(discover, carry, first)
    probes = jax.tree.map(lambda s: jnp.zeros((length, *s.shape), s.dtype), shapes)

    def run(c, xs, probes):
        def body(c, inputs):
            x, p = inputs
            tape = _Tape(p)
            c, y = step(tape.weights(weights), c, x)
            return c, (y, tape.inputs)

        c, (ys, inputs) = jax.lax.scan(body, c, ((xs, consts), probes))
        return (c, ys), inputs

    out, pullback, inputs = jax.vjp(run, carry, xs, probes, has_aux=True)
    return out, (pullback, inputs, weights)


def _scan_backward(step, residuals, ct):
    pullback, inputs, weights = residuals
    d_carry, d_xs, d_outputs = pullback(ct)
    grads = {}
    for name, (kernel, bias) in weights.items():
        pairs = list(zip(inputs.get(name, []), d_outputs.get(name, []), strict=True))
        dk = jnp.zeros(kernel.shape, jnp.float32)
        db = None if bias is None else jnp.zeros(bias.shape, jnp.float32)
        for x, dy in pairs:  # one matmul over all steps (and rows) per call
            dk += jnp.einsum("...i,...o->io", x, dy, preferred_element_type=jnp.float32)
            if bias is not None:
                db += dy.sum(tuple(range(dy.ndim - 1)), dtype=jnp.float32)
        grads[name] = (dk.astype(kernel.dtype), None if bias is None else db.astype(bias.dtype))
    return grads, d_carry, d_xs, None


_scan_weight_grads.defvjp(_scan_forward, _scan_backward)


def lstm_update(gates_Bx4E: jax.Array, c_BxE: jax.Array) -> tuple[jax.Array, jax.Array]:
    """LSTM cell (Hochreiter & Schmidhuber 1997; PyTorch i, f, g, o order) from summed gates.

    Returns (h, c): h in the gates' dtype, c in float32 (the cell state accumulates).
    """
    i, f, g, o = jnp.split(gates_Bx4E.astype(jnp.float32), 4, axis=-1)
    c = jax.nn.sigmoid(f) * c_BxE.astype(jnp.float32) + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return h.astype(gates_Bx4E.dtype), c


def gru_update(x_gates_Bx3E: jax.Array, h_gates_Bx3E: jax.Array, h_BxE: jax.Array) -> jax.Array:
    """GRU cell (Cho et al. 2014; PyTorch r, z, n order): n uses r * (W_hn h + b_hn)."""
    xr, xz, xn = jnp.split(x_gates_Bx3E.astype(jnp.float32), 3, axis=-1)
    hr, hz, hn = jnp.split(h_gates_Bx3E.astype(jnp.float32), 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    h = (1.0 - z) * n + z * h_BxE.astype(jnp.float32)
    return h.astype(h_BxE.dtype)


def hard_sigmoid(x: jax.Array) -> jax.Array:
    """Keras 2 / TF 1.x ``hard_sigmoid``: clip(0.2 x + 0.5, 0, 1) (the IDU authors' gate)."""
    return jnp.clip(0.2 * x + 0.5, 0.0, 1.0)


GATE_ACTIVATIONS = {"sigmoid": jax.nn.sigmoid, "hard_sigmoid": hard_sigmoid}


def idu_update(
    xt_gates_Bx2E: jax.Array,
    x0_gates_Bx2E: jax.Array,
    h_BxE: jax.Array,
    w_hr,
    w_hh,
    *,
    gate: str = "sigmoid",
    reset_after: bool = False,
) -> jax.Array:
    """Information Discrimination Unit (Eun et al., CVPR 2020, Sec. 3.1, Eq. 1-4).

    r = g(W_hr h + W_x0r x0~),  z = g(W_xtz xt~ + W_x0z x0~),
    h~ = tanh(W_xth xt~ + W_hh (r * h)),  h' = (1 - z) h + z h~,
    as the authors' released cell computes it (hjeun/idu, ``IDUCell.type1`` in
    ``patches/tensorflow.python.keras.layers/recurrent.py``): the reset gate scales h before the
    W_hh matmul and z weighs the new content h~. ``gate`` is g: ``sigmoid`` as the paper writes
    it, ``hard_sigmoid`` as the released code runs it (Keras' default recurrent activation).
    ``reset_after=True`` applies r after the matmul instead, h~ = tanh(W_xth xt~ + r * (W_hh h))
    (cuDNN's GRU form; this project's earlier default).

    ``xt_gates`` = [W_xtz xt~ ; W_xth xt~], ``x0_gates`` = [W_x0r x0~ ; W_x0z x0~] (biases
    included); ``w_hr`` and ``w_hh`` are (kernel, bias) pairs for :func:`dense`.
    """
    g = GATE_ACTIVATIONS[gate]
    xz, xh = jnp.split(xt_gates_Bx2E.astype(jnp.float32), 2, axis=-1)
    x0r, x0z = jnp.split(x0_gates_Bx2E.astype(jnp.float32), 2, axis=-1)
    h = h_BxE.astype(jnp.float32)
    r = g(dense(w_hr, h_BxE).astype(jnp.float32) + x0r)
    z = g(xz + x0z)
    if reset_after:
        hh = r * dense(w_hh, h_BxE).astype(jnp.float32)
    else:
        hh = dense(w_hh, (r * h).astype(h_BxE.dtype)).astype(jnp.float32)
    h_tilde = jnp.tanh(xh + hh)
    return ((1.0 - z) * h + z * h_tilde).astype(h_BxE.dtype)


def dropout_mask(key: jax.Array, shape, rate: float, dtype) -> jax.Array:
    """Inverted-dropout multiplier: 0 with probability ``rate``, else 1 / (1 - rate)."""
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return jnp.where(keep, 1.0 / (1.0 - rate), 0.0).astype(dtype)


def dropout(key: jax.Array | None, x: jax.Array, rate: float) -> jax.Array:
    """Inverted dropout; identity when ``key`` is None (deterministic) or ``rate`` is 0."""
    if key is None or rate == 0.0:
        return x
    return x * dropout_mask(key, x.shape, rate, x.dtype)
