"""Image-caption data from the user's files, streamed through grain for the image-text families.

``config.data.name`` picks the source (:data:`NAMES`); the keys are :func:`add_config`'s:

- ``webdataset``: tar shards ``data.urls`` (:mod:`jaxmodels.data.webdataset`); each process
  indexes and reads its own shards (``shards[process_index::process_count]``); with fewer
  shards than processes every process indexes all of them and takes every ``count``-th record.
- ``csv``: a CSV/TSV/JSONL table of image paths and captions, ``data.path``
  (:mod:`jaxmodels.data.captions_table`); processes take every ``count``-th record.
- ``tfds``: a prepared TFDS dataset (``data.tfds_name``), caption feature ``data.text_key``,
  nested with ``/`` (COCO: ``captions/text``).

A record with several captions gives one example per caption (``data.captions = "each"``,
shuffled with the rest) or one caption drawn per visit (``"random"``; evaluation takes the
first). Training images are seeded random-resized crops of ``data.crop_scale`` of the area,
evaluation images the centre square, both resized (antialiased) to ``data.image_size``. A bad
record (undecodable image, missing or non-string caption) stops the run with an error naming
the shard and member (table row, TFDS index); ``data.skip_bad`` skips and counts it instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from absl import logging

from jaxmodels.data import transforms
from jaxmodels.data.image_text import PairSplit
from jaxmodels.data.transforms import BadRecord

NAMES = ("webdataset", "csv", "tfds")
CAPTIONS = ("each", "random")


def add_config(d, crop_scale=(0.9, 1.0)) -> None:
    """Adds the keys of the file sources to ``config.data`` (each documented here)."""
    d.urls = ""  # webdataset: training shards, brace patterns ('a/{00000..00127}.tar'), '::'-joined
    d.eval_urls = ""  # webdataset: held-out shards for eval loss and retrieval ('' = none)
    d.caption_key = ""  # webdataset: the .json field holding the caption ('' reads the .txt member)
    d.path = ""  # csv: the training table (.csv / .tsv with a header row, or .jsonl)
    d.eval_path = ""  # csv: the held-out table ('' = none)
    d.tfds_name = ""  # tfds: a prepared TFDS caption dataset (array_record), e.g. coco_captions
    d.tfds_data_dir = ""  # tfds: its data_dir ('' = TFDS default)
    d.train_split = "train"  # tfds: split names
    d.eval_split = "validation"
    d.image_key = "image"  # csv: image path column; tfds: image feature
    d.text_key = "caption"  # csv: caption column; tfds: caption feature, '/' nests (captions/text)
    d.captions = "random"  # several captions a record: each (an example each) | random (one)
    d.crop_scale = crop_scale  # training crop: share of the image area (random-resized crop)
    d.skip_bad = False  # skip (and count, in the log) bad records instead of stopping with an error
    d.worker_count = 0  # grain worker processes decoding images (0: threads of the train process)


def check_config(d) -> None:
    """Fails fast, naming the key, on a file-source config that cannot work."""
    need = {"webdataset": "urls", "csv": "path", "tfds": "tfds_name"}[d.name]
    if not d[need]:
        raise ValueError(f"config.data.name={d.name!r} needs config.data.{need}")
    if d.captions not in CAPTIONS:
        raise ValueError(f"config.data.captions={d.captions!r}: choose one of {CAPTIONS}")
    low, high = d.crop_scale
    if not 0 < low <= high <= 1:
        raise ValueError(
            f"config.data.crop_scale={tuple(d.crop_scale)!r}: need 0 < low <= high <= 1"
        )
    if d.worker_count < 0:
        raise ValueError(f"config.data.worker_count={d.worker_count!r} must be >= 0")


# ----------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------


def open_source(d, split: str, process_index: int = 0, process_count: int = 1):
    """``(records, split_records)`` of ``split`` ("train" | "eval"); ``None`` records when the
    config names no eval data. ``split_records`` is False when ``records`` are already this
    process's own (its webdataset shards)."""
    from jaxmodels.data import captions_table, image_text, webdataset

    train = split == "train"
    if d.name == "webdataset":
        urls = d.urls if train else d.eval_urls
        if not urls:
            return None, True
        shards = webdataset.expand_urls(urls)
        own = train and len(shards) >= process_count
        if train and not own:
            logging.info(
                "%d shards for %d processes: each indexes all and reads every %d-th record",
                *(len(shards), process_count, process_count),
            )
        shards = shards[process_index::process_count] if own else shards
        return webdataset.WebDatasetSource(shards, d.caption_key), not own
    if d.name == "csv":
        path = d.path if train else d.eval_path
        table = captions_table.CaptionTable(path, d.image_key, d.text_key) if path else None
        return table, True
    split_name = d.train_split if train else d.eval_split
    source = image_text.tfds_pairs(
        d.tfds_name, split_name, d.tfds_data_dir or None, d.image_key, d.text_key
    )
    return source, True


class Skips:
    """Counts skipped bad records (``data.skip_bad``), logs them, and stops if most are bad."""

    def __init__(self, enabled: bool):
        self.enabled, self.seen, self.skipped = enabled, 0, 0

    def __call__(self, error: BadRecord):
        if not self.enabled:
            raise error
        self.skipped += 1
        if self.skipped <= 10 or not self.skipped & (self.skipped - 1):  # 1..10, then 2^k
            logging.warning(
                "skipped a bad record (%d so far in this process): %s", self.skipped, error
            )
        if self.skipped >= 100 and self.skipped > self.seen / 2:
            raise ValueError(
                f"{self.skipped} of {self.seen} records were bad (data.skip_bad); the last: {error}"
            )


class Records:
    """A source's records, one per caption (``captions="each"``) or per record, bad ones
    (with ``skip_bad``) as ``None``."""

    def __init__(self, source, captions: str, skips: Skips):
        self.source, self.skips = source, skips
        self._ends = None
        if captions == "each":  # reads every record's captions (not its image) once
            count = getattr(source, "captions", lambda i: source[i]["captions"])
            self._ends = np.cumsum([self._count(count, i) for i in range(len(source))])

    def _count(self, count, i) -> int:
        self.skips.seen += 1
        try:
            return len(count(i))
        except BadRecord as e:
            self.skips(e)
            return 0

    def __len__(self) -> int:
        if self._ends is None:
            return len(self.source)
        return int(self._ends[-1]) if len(self._ends) else 0

    def __repr__(self) -> str:
        return f"Records({self.source!r})"

    def __getitem__(self, i: int):
        if self._ends is None:
            record, caption = i, None
        else:
            record = int(np.searchsorted(self._ends, i, side="right"))
            caption = i - (int(self._ends[record - 1]) if record else 0)
        self.skips.seen += 1
        try:
            out = self.source[record]
        except BadRecord as e:
            return self.skips(e)
        return out if caption is None else {**out, "captions": [out["captions"][caption]]}


# ----------------------------------------------------------------------------------------------
# Transforms and pipelines
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class PairTransform:
    """record -> ``{"image": uint8 (S, S, 3), **encode(caption)}``, or ``None`` if skipped.

    Training draws the caption and the crop from ``rng``; evaluation takes the first caption
    and the centre crop.
    """

    encode: Callable[[str], dict]
    size: int
    crop_scale: tuple[float, float]
    skips: Skips

    def __call__(self, record, rng: np.random.Generator | None = None):
        if record is None:
            return None
        captions, where = record["captions"], record["where"]
        try:
            if rng is None:
                image = transforms.eval_image(record["image"], self.size, where)
                caption = captions[0]
            else:
                caption = captions[int(rng.integers(len(captions)))]
                image = transforms.train_image(
                    record["image"], self.size, rng, tuple(self.crop_scale), where
                )
        except BadRecord as e:
            return self.skips(e)
        return {"image": image, **self.encode(caption)}


def process_seed(seed: int, process_index: int) -> int:
    """A 32-bit seed of its own for each process's random crops."""
    return int(np.random.SeedSequence([seed, process_index]).generate_state(1)[0])


def iterator_fn(config, split: str, encode: Callable[[str], dict], opened=None):
    """The ``(process_index, process_count) -> iterator`` of ``split``'s batches, or ``None``.

    ``encode`` maps a caption to the family's token arrays. Training streams shuffle (seeded
    by ``config.seed``), repeat and crop at random; eval passes take each record once. Sources
    are opened once (``opened``: the eval records already open, the same on every process).
    """
    from jaxmodels.data import pipeline

    d, train = config.data, split == "train"
    cache = {} if opened is None else {None: opened}

    def make(process_index: int, process_count: int):
        key = (process_index, process_count) if train else None  # eval: all records, split below
        if key not in cache:
            source, split_records = open_source(d, split, process_index, process_count)
            cache[key] = (Records(source, d.captions, Skips(d.skip_bad)), split_records)
        records, split_records = cache[key]
        per_process = pipeline.per_process_batch(config.train.batch_size, process_count)
        transform = PairTransform(encode, d.image_size, tuple(d.crop_scale), records.skips)
        return pipeline.make_iterator(
            records,
            global_batch_size=per_process * (process_count if split_records else 1),
            seed=config.seed,
            process_index=process_index if split_records else 0,
            process_count=process_count if split_records else 1,
            shuffle=train,
            repeat=train,
            transform=None if train else transform,
            random_transform=transform if train else None,
            transform_seed=process_seed(config.seed, process_index),
            drop_none=True,
            worker_count=d.worker_count if train else 0,
            prefetch=max(4 * per_process, 32),  # decoded records, not grain's 500
        )

    if not train and not has_eval(d):
        return None
    return make


def has_eval(d) -> bool:
    """Whether the config names held-out data (tfds: always; else eval_urls / eval_path)."""
    return {"webdataset": bool(d.eval_urls), "csv": bool(d.eval_path)}.get(d.name, True)


def first_pairs(source, n: int, size: int, skips: Skips) -> PairSplit:
    """The first ``n`` usable records as centre-cropped images and their first captions."""
    records, images, captions = Records(source, "random", skips), [], []
    for i in range(len(records)):
        if len(images) == n:
            break
        record = records[i]
        if record is None:
            continue
        try:
            images.append(transforms.eval_image(record["image"], size, record["where"]))
        except BadRecord as e:
            records.skips(e)
            continue
        captions.append(record["captions"][0])
    if not images:
        raise ValueError(f"{source!r} has no usable record")
    return PairSplit(np.stack(images), tuple(captions))


def caption_sample(d, n: int) -> list[str]:
    """The first caption of each of the first ``n`` usable training records (webdataset: of
    the first shard), e.g. the pool of a most-frequent-caption baseline."""
    from jaxmodels.data import webdataset

    if d.name == "webdataset":
        source = webdataset.WebDatasetSource(webdataset.expand_urls(d.urls)[:1], d.caption_key)
    else:
        source = open_source(d, "train")[0]
    records, out = Records(source, "random", Skips(d.skip_bad)), []
    for i in range(min(n, len(records))):
        if (record := records[i]) is not None:
            out.append(record["captions"][0])
    return out


@dataclasses.dataclass(frozen=True)
class Streamed:
    """What a family gets from a file source: grain iterators and held-out pairs in memory."""

    train: Callable  # (process_index, process_count) -> iterator of batches
    eval: Callable | None  # the same, one pass over the held-out records; None without them
    held_out: PairSplit | None  # the first ``n_held`` held-out pairs (retrieval, captioning)


def streamed(config, encode: Callable[[str], dict], n_held: int) -> Streamed:
    """Train/eval pipelines of ``config.data`` and its first ``n_held`` held-out pairs."""
    d = config.data
    check_config(d)
    held, opened = None, None
    if has_eval(d):
        source, split_records = open_source(d, "eval")
        opened = (Records(source, d.captions, Skips(d.skip_bad)), split_records)
        held = first_pairs(source, n_held, d.image_size, opened[0].skips)
    return Streamed(
        iterator_fn(config, "train", encode),
        iterator_fn(config, "eval", encode, opened),
        held,
    )
