"""The bijector interface, partitions, and chaining.

Every bijector is a linen module called as ``y, log_det = layer(x)`` (forward, data -> latent)
and ``x, log_det = layer(y, inverse=True)``, where ``log_det`` is the per-example
log |det d(output)/d(input)| of the direction called, shape (B,). So the inverse's log_det is
minus the forward's at the matching point, and a chain's log_det is the sum of its layers'
(the change of variables, Dinh et al. 2014, eq. 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

MASKS = ("checkerboard", "channel", "halves", "odd_even")


def sum_except_batch(x: jax.Array) -> jax.Array:
    """Sums every axis but the first (batch): ``(B, ...) -> (B,)``."""
    return x.reshape(x.shape[0], -1).sum(-1)


def partition_mask(kind: str, event_shape: tuple[int, ...], parity: int) -> np.ndarray:
    """The coupling partition b (1: passed through and conditioned on; 0: transformed).

    ``checkerboard`` and ``channel`` partition images (H, W, C) (RealNVP, Dinh et al. 2016,
    Fig. 3); ``halves`` and ``odd_even`` partition vectors (D,) (NICE, Dinh et al. 2014, §5.1).
    ``parity`` 1 swaps the two parts, so alternating layers transform every dimension.
    """
    if kind in ("checkerboard", "channel") and len(event_shape) != 3:
        raise ValueError(f"mask {kind!r} partitions images (H, W, C), got shape {event_shape}")
    if kind in ("halves", "odd_even") and len(event_shape) != 1:
        raise ValueError(f"mask {kind!r} partitions vectors (D,), got shape {event_shape}")
    if kind == "checkerboard":
        h, w, c = event_shape
        b = (np.add.outer(np.arange(h), np.arange(w)) % 2 == 0)[..., None].repeat(c, -1)
    elif kind == "channel":
        b = np.broadcast_to(np.arange(event_shape[2]) < event_shape[2] // 2, event_shape)
    elif kind == "halves":
        b = np.arange(event_shape[0]) < event_shape[0] // 2
    elif kind == "odd_even":
        b = np.arange(event_shape[0]) % 2 == 0
    else:
        raise ValueError(f"mask {kind!r}: choose one of {MASKS}")
    return (b != bool(parity)).astype(np.float32)


class Chain(nn.Module):
    """Composition f_K o ... o f_1: forward runs ``layers`` in order, inverse in reverse."""

    layers: Sequence[nn.Module]

    def __call__(self, x, inverse: bool = False):
        log_det = jnp.zeros(x.shape[0], jnp.float32)
        for layer in reversed(self.layers) if inverse else self.layers:
            x, ld = layer(x, inverse=inverse)
            log_det = log_det + ld
        return x, log_det


class _ScanBody(nn.Module):
    block: type
    kwargs: Any
    inverse: bool
    indexed: bool

    @nn.compact
    def __call__(self, carry, step):
        x, log_det = carry
        extra = {"step": step} if self.indexed else {}
        y, ld = self.block(**self.kwargs)(x, inverse=self.inverse, **extra)
        return (y, log_det + ld), None


class Repeat(nn.Module):
    """``length`` identical blocks ``block(**kwargs)`` with their own parameters, as one
    ``nn.scan`` (parameters stacked on a leading ``layers`` axis); the inverse scans in reverse.
    With ``indexed`` each block is also called with ``step=k`` (a traced int, 0..length-1), for
    what differs between otherwise identical blocks (Glow's fixed 1x1-conv permutations).

    ``unroll`` blocks run per loop iteration (``jax.lax.scan``'s ``unroll``): 1 compiles one
    block; ``length`` compiles all of them but leaves no loop, and XLA's CPU backend runs
    convolutions inside a loop body several times slower (docs/flows.md)."""

    block: type
    length: int
    kwargs: Any = None
    indexed: bool = False
    unroll: int = 1

    @nn.compact
    def __call__(self, x, inverse: bool = False):
        scan = nn.scan(
            _ScanBody,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            length=self.length,
            reverse=inverse,
            unroll=self.unroll,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )
        body = scan(self.block, dict(self.kwargs or {}), inverse, self.indexed, name="blocks")
        carry = (x, jnp.zeros(x.shape[0], jnp.float32))
        (y, log_det), _ = body(carry, jnp.arange(self.length))
        return y, log_det
