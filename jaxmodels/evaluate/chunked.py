"""One jitted function mapped over a dataset held on the host, a fixed-size chunk at a time.

Whole-dataset evaluators (embedders for zero-shot and retrieval, ITM scores, per-row sums for
perplexity) run a model over more rows than fit one call. :func:`chunked_map` cuts the rows into
chunks of ``chunk_size``, zero-pads the last one to the same shape (so the function compiles
once), dispatches every chunk before reading any back, and drops the padded rows from the
result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np


def pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    """``x`` with zero rows appended up to ``rows`` rows."""
    x = np.asarray(x)
    return np.concatenate([x, np.zeros((rows - len(x), *x.shape[1:]), x.dtype)])


def chunked_map(fn: Callable, chunk_size: int, *, mesh=None) -> Callable[..., Any]:
    """``run(params, *arrays_B) -> outputs_B``: ``fn(params, *chunks)`` jitted, on every chunk.

    ``fn`` maps ``chunk_size`` rows of each array to a pytree of arrays whose leading dimension is
    those rows; ``run`` returns the same pytree with the rows of all chunks concatenated (N rows,
    padding dropped) as numpy arrays. ``params`` may be sharded over a mesh; with ``mesh`` the
    outputs are replicated on it, so every process of a multi-host run can read them.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size={chunk_size} must be positive")
    out_shardings = None
    if mesh is not None:
        out_shardings = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    jitted = jax.jit(fn, out_shardings=out_shardings)

    def run(params, *arrays):
        lengths = {len(a) for a in arrays}
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"chunked_map needs arrays of one non-zero length, got {lengths}")
        n = lengths.pop()
        pending = []  # dispatch every chunk first: the host pads the next while the device runs
        for i in range(0, n, chunk_size):
            chunk = [pad_rows(a[i : i + chunk_size], chunk_size) for a in arrays]
            pending.append((jitted(params, *chunk), min(chunk_size, n - i)))
        parts = [jax.tree.map(lambda y, k=k: np.asarray(y)[:k], out) for out, k in pending]
        return jax.tree.map(lambda *ys: np.concatenate(ys), *parts)

    return run
