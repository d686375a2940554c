"""Grain pipelines shared by every family: seeded shuffle, per-process sharding, map, batch.

Every iterator returned here is a grain ``DatasetIterator``: its ``get_state``/``set_state``
position is saved in checkpoints, so a resumed run continues with exactly the next batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

Record = dict[str, np.ndarray]


class ArraySource:
    """A random-access record source over equally long numpy arrays (one record per row)."""

    def __init__(self, arrays: Mapping[str, Any]):
        self._arrays = {k: np.asarray(v) for k, v in arrays.items()}
        lengths = {k: len(v) for k, v in self._arrays.items()}
        if not lengths:
            raise ValueError("ArraySource needs at least one array")
        if len(set(lengths.values())) != 1:
            raise ValueError(f"ArraySource arrays differ in length: {lengths}")
        self._len = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> Record:
        return {k: v[index] for k, v in self._arrays.items()}

    def __repr__(self) -> str:
        shapes = {k: v.shape for k, v in self._arrays.items()}
        return f"ArraySource({shapes})"


def per_process_batch(global_batch_size: int, process_count: int) -> int:
    """Returns each process's share of the global batch, which must divide evenly."""
    if global_batch_size % process_count:
        raise ValueError(
            f"train.batch_size={global_batch_size} must be divisible by the number of "
            f"processes ({process_count})"
        )
    return global_batch_size // process_count


def make_iterator(
    source,
    *,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    shuffle: bool = True,
    repeat: bool = True,
    transform: Callable[[Record], Record] | None = None,
    drop_remainder: bool = True,
):
    """Returns a checkpointable iterator over this process's batches of ``source``.

    Args:
      source: random-access records (``__len__``, ``__getitem__``), e.g. :class:`ArraySource`
        or :func:`tfds_source`.
      global_batch_size: examples per step across all processes.
      seed: shuffle seed; each epoch is reshuffled deterministically from it.
      process_index, process_count: this process's shard (records ``i::count``).
      shuffle, repeat: training streams shuffle and repeat forever; eval passes use neither.
      transform: per-record function (tokenise, augment, ...), applied before batching.
      drop_remainder: drop a final partial batch (keep it for exact eval passes).
    """
    import grain

    if len(source) == 0:
        raise ValueError(f"data source {source!r} is empty")
    ds = grain.MapDataset.source(source)
    if shuffle:
        ds = ds.shuffle(seed=seed)
    if repeat:
        ds = ds.repeat(None)
    ds = ds[process_index::process_count]
    if transform is not None:
        ds = ds.map(transform)
    batch = per_process_batch(global_batch_size, process_count)
    ds = ds.batch(batch, drop_remainder=drop_remainder)
    return iter(ds.to_iter_dataset())


def iterator_fn(source, config, *, train: bool, transform=None):
    """Returns the ``(process_index, process_count) -> iterator`` a :class:`Task` takes.

    Training streams shuffle (seeded by ``config.seed``) and repeat; eval passes do neither.
    The global batch is ``config.train.batch_size``.
    """

    def make(process_index: int, process_count: int):
        return make_iterator(
            source,
            global_batch_size=config.train.batch_size,
            seed=config.seed,
            process_index=process_index,
            process_count=process_count,
            shuffle=train,
            repeat=train,
            transform=transform,
        )

    return make


def tfds_source(name: str, split: str, data_dir: str | None = None):
    """Returns ``tfds.data_source(name, split)``: random access over ArrayRecord files.

    Works without TensorFlow installed; the dataset must already be prepared in ``data_dir``
    (nothing is downloaded here).
    """
    import tensorflow_datasets as tfds

    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # tfds raises several types for a missing/unprepared dataset
        raise FileNotFoundError(
            f"TFDS dataset {name!r} (split {split!r}) is not prepared under data_dir="
            f"{data_dir!r}; prepare it with `tfds build {name} --file_format=array_record` "
            f"first ({type(e).__name__}: {e})"
        ) from e
