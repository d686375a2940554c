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
    random_transform: Callable[[Record, np.random.Generator], Record | None] | None = None,
    transform_seed: int | None = None,
    drop_none: bool = False,
    worker_count: int = 0,
    prefetch: int | None = None,
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
      random_transform: ``(record, rng) -> record`` (random crops), after ``transform``; grain
        seeds ``rng`` from ``transform_seed`` (default ``seed``) and the record's position in
        this process's stream, so a resumed or replayed stream draws the same numbers.
      drop_none: drop records a transform maps to ``None`` (skipped bad records); batches are
        then formed after the drop.
      worker_count: grain worker processes running the transforms (0: in this process, on
        grain's read threads).
      prefetch: elements grain's read threads keep ready ahead of the consumer (records with
        ``drop_none``, else batches; default grain's 500).
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
    if random_transform is not None:
        ds = ds.random_map(
            random_transform, seed=seed if transform_seed is None else transform_seed
        )
    batch = per_process_batch(global_batch_size, process_count)
    read = grain.ReadOptions(prefetch_buffer_size=prefetch) if prefetch else None
    if drop_none:
        ds = ds.filter(lambda record: record is not None).to_iter_dataset(read)
        ds = ds.batch(batch, drop_remainder=drop_remainder)
    else:
        ds = ds.batch(batch, drop_remainder=drop_remainder).to_iter_dataset(read)
    if worker_count:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # grain reads its absl flags (defaults outside the CLI)
            flags.FLAGS.mark_as_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return iter(ds)


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


def tfds_source(name: str, split: str, data_dir: str | None = None, undecoded=()):
    """Returns ``tfds.data_source(name, split)``: random access over ArrayRecord files.

    Works without TensorFlow installed; the dataset must already be prepared in ``data_dir``
    (nothing is downloaded here). Top-level ``Image`` features named in ``undecoded`` come as
    their encoded bytes.
    """
    import tensorflow_datasets as tfds

    try:
        features = tfds.builder(name, data_dir=data_dir).info.features
        decoders = {
            key: tfds.decode.SkipDecoding()
            for key in undecoded
            if key in features and isinstance(features[key], tfds.features.Image)
        }
        return tfds.data_source(
            name, split=split, data_dir=data_dir, download=False, decoders=decoders or None
        )
    except Exception as e:  # tfds raises several types for a missing/unprepared dataset
        raise FileNotFoundError(
            f"TFDS dataset {name!r} (split {split!r}) is not prepared under data_dir="
            f"{data_dir!r}; prepare it with `tfds build {name} --file_format=array_record` "
            f"first ({type(e).__name__}: {e})"
        ) from e
