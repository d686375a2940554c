"""What a checkpoint holds, checked after it loads: every value finite and every array equal
to the checksum saved beside it (``train/checkpoint.py`` for the trainer's own run,
``train/warmstart.py`` for another run's, read only).

Storage keeps no checksum of its own: a flipped bit in the data files loads as a silently
different number, and most flips stay finite, so the finite check alone would miss them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def leaf_name(path) -> str:
    """A pytree key path as ``params/Dense_0/kernel`` (the names errors use)."""
    return "/".join(_key_name(k) for k in path)


class CorruptCheckpointError(ValueError):
    """A checkpoint loaded, but its values are not finite or differ from the saved checksums."""


def _words(x: jax.Array) -> jax.Array:
    """The bits of ``x`` as uint32 (an 8-byte element gives two words along a new last axis)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _checksum(x: jax.Array) -> jax.Array:
    """``sum_i w_i (2 i + 1) mod 2**32`` over the words ``w`` of ``x`` in row-major order ``i``.

    The weights are odd, so any single flipped bit changes the sum; they depend on the position,
    so moved values do too. Integer sums do not depend on the order of addition: the result is
    the same whatever the sharding.
    """
    w = _words(x)
    index, stride = jnp.zeros(w.shape, jnp.uint32), 1
    for axis in reversed(range(w.ndim)):
        iota = jax.lax.broadcasted_iota(jnp.uint32, w.shape, axis)
        index, stride = index + iota * jnp.uint32(stride % 2**32), stride * w.shape[axis]
    return jnp.sum(w * (2 * index + 1), dtype=jnp.uint32)


@jax.jit
def _digest(leaves: list) -> list:
    """Per leaf: ``(all values finite, checksum)``."""
    return [
        (
            jnp.isfinite(x).all() if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.array(True),
            _checksum(x),
        )
        for x in leaves
    ]


def digest(state) -> dict[str, tuple[str, bool, int]]:
    """``{"params/Dense_0/kernel": (dtype, finite, checksum), ...}`` in one pass over ``state``."""
    flat, _ = jax.tree_util.tree_flatten_with_path(state)
    leaves = [x if hasattr(x, "dtype") else jnp.asarray(x) for _, x in flat]  # Python scalars
    got = jax.device_get(_digest(leaves))
    return {
        leaf_name(p): (str(x.dtype), bool(ok), int(sum_))
        for (p, _), x, (ok, sum_) in zip(flat, leaves, got, strict=True)
    }


def verify(state, checksums: dict | None) -> None:
    """Raises ``CorruptCheckpointError`` naming the first array that is non-finite or whose
    checksum differs from ``checksums`` (``{name: [dtype, checksum]}`` as saved; arrays restored
    into another dtype, and checkpoints saved without checksums, are checked for finiteness)."""
    for name, (dtype, finite, sum_) in digest(state).items():
        if not finite:
            raise CorruptCheckpointError(f"{name} holds NaN or Inf values")
        saved = (checksums or {}).get(name)
        if saved is not None and saved[0] == dtype and int(saved[1]) != sum_:
            raise CorruptCheckpointError(
                f"{name} differs from what was saved (checksum {sum_:#010x}, saved "
                f"{int(saved[1]):#010x}): the stored bytes changed after the save"
            )
