"""(image, caption) data of the contrastive family: captions, zero-shot tasks, the builder.

``config.data.name``:

- ``shapes``: rendered scenes (:func:`jaxmodels.data.image_text.render_shapes`); a one-object
  image is captioned by a prompt template ("a picture of a green triangle"), a two-object
  image by its description ("a red circle left of a blue square"). The held-out one-object
  images are a 12-class zero-shot task.
- ``digits``: the shared digits split (:mod:`jaxmodels.data.digits`) upsampled to RGB, one
  caption per template per training image ("a handwritten digit seven"); the held-out images
  are a 10-class zero-shot task.
- ``embedded``: both.
- ``webdataset``, ``csv``, ``tfds``: the user's image-caption files or a prepared TFDS dataset
  (:mod:`jaxmodels.data.image_text_sources`): cropped and resized images, retrieval on the
  held-out split, no zero-shot task.

Captions become ids of the tokenizer ``config.data.tokenizer`` names
(:func:`jaxmodels.data.tokenizers.make_tokenizer`: UTF-8 bytes by default, or a ``tokenizer.json``,
SentencePiece model or HF directory, framed by its special tokens and padded as ``transformers``
pads them) and their lengths, which the text tower uses as its padding.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxmodels.data import digits, image_text, image_text_sources
from jaxmodels.data.image_text import PairSplit

SHAPE_TEMPLATES = ("a {}", "a picture of a {}", "an image of a {}")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_TEMPLATES = ("a handwritten digit {}", "the number {}", "a drawing of the digit {}")
SHAPE_CLASSES = tuple(f"{c} {s}" for c in image_text.COLORS for s in image_text.SHAPES)
EMBEDDED = {"embedded": ("shapes", "digits"), "shapes": ("shapes",), "digits": ("digits",)}


@dataclasses.dataclass(frozen=True)
class ZeroShotTask:
    """Held-out images with labels, class names and the prompt templates that name them."""

    images: np.ndarray  # uint8 (N, S, S, 3)
    labels: np.ndarray  # int (N,)
    classnames: tuple[str, ...]
    templates: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ContrastiveData:
    """What the family's task needs from its data config."""

    train: Callable  # (process_index, process_count) -> iterator of batches
    eval: Callable | None  # the same, one pass over held-out pairs
    image_shape: tuple[int, int, int]
    zero_shot: dict[str, ZeroShotTask]  # held-out zero-shot classification tasks by name
    retrieval: PairSplit | None  # held-out pairs for recall@K
    tokenizer: Any  # what made the ``text`` ids (jaxmodels.data.tokenizers)


# ----------------------------------------------------------------------------------------------
# Embedded datasets
# ----------------------------------------------------------------------------------------------


def shapes_split(n: int, size: int, seed) -> tuple[PairSplit, np.ndarray]:
    """``n`` rendered pairs and their labels (index in ``SHAPE_CLASSES``; -1 for two objects)."""
    images, scenes = image_text.render_shapes(n, size, seed)
    rng = np.random.default_rng((*np.atleast_1d(seed), 1))  # template choice
    captions, labels = [], []
    for scene in scenes:
        if scene.relation is None:
            name = " ".join(scene.objects[0])
            captions.append(SHAPE_TEMPLATES[rng.integers(len(SHAPE_TEMPLATES))].format(name))
            labels.append(SHAPE_CLASSES.index(name))
        else:
            captions.append(scene.description())
            labels.append(-1)
    return PairSplit(images, tuple(captions)), np.asarray(labels)


def shapes_dataset(n_train: int, n_eval: int, size: int = 32, seed: int = 0):
    """Returns (train PairSplit, eval PairSplit, ZeroShotTask over one-object eval images)."""
    train, _ = shapes_split(n_train, size, (seed, 0))
    held_out, labels = shapes_split(n_eval, size, (seed, 1))
    single = labels >= 0
    task = ZeroShotTask(held_out.images[single], labels[single], SHAPE_CLASSES, SHAPE_TEMPLATES)
    return train, held_out, task


def digits_rgb(images_BxHxW: np.ndarray, size: int) -> np.ndarray:
    """Grey levels 0..16 -> uint8 RGB (N, size, size, 3), nearest-neighbour upsampled."""
    grey = digits.upsample_nearest(images_BxHxW, size) * (255.0 / digits.LEVELS)
    return np.repeat(grey[..., None], 3, axis=-1).astype(np.uint8)


def digits_dataset(size: int = 32, holdout: float = 0.2, seed: int = 0):
    """The shared digits split as pairs: every template for training images, one for held-out."""

    def pairs(images, labels, templates):
        caps = tuple(t.format(DIGIT_NAMES[y]) for y in labels for t in templates)
        return PairSplit(np.repeat(images, len(templates), axis=0), caps)

    train_x, train_y = digits.digits("train", holdout, seed)
    eval_x, eval_y = digits.digits("eval", holdout, seed)
    eval_rgb = digits_rgb(eval_x, size)
    task = ZeroShotTask(eval_rgb, eval_y, DIGIT_NAMES, DIGIT_TEMPLATES)
    train = pairs(digits_rgb(train_x, size), train_y, DIGIT_TEMPLATES)
    return train, pairs(eval_rgb, eval_y, DIGIT_TEMPLATES[:1]), task


def embedded_splits(d) -> tuple[PairSplit, PairSplit, dict[str, ZeroShotTask]]:
    """The embedded ``shapes``, ``digits`` or ``embedded`` (both) dataset at ``d.image_size``."""
    if d.name not in EMBEDDED:
        names = [*EMBEDDED, *image_text_sources.NAMES]
        raise ValueError(f"config.data.name={d.name!r}: use one of {names}")
    train, held_out, tasks = [], [], {}
    for part in EMBEDDED[d.name]:
        if part == "shapes":
            tr, ev, task = shapes_dataset(d.train_size, d.eval_size, d.image_size, d.split_seed)
        else:
            tr, ev, task = digits_dataset(d.image_size, seed=d.split_seed)
        train.append(tr)
        held_out.append(ev)
        tasks[part] = task
    return image_text.concat_splits(*train), image_text.concat_splits(*held_out), tasks


# ----------------------------------------------------------------------------------------------
# Pipelines from config
# ----------------------------------------------------------------------------------------------


def pair_arrays(split: PairSplit, tokenizer, max_len: int) -> dict[str, np.ndarray]:
    """A split as the batch arrays: ``image`` uint8, ``text`` int32 ids, ``text_len`` int32."""
    ids, lengths = tokenizer.encode_batch(split.captions, max_len)
    return {"image": split.images, "text": ids, "text_len": lengths}


def encode_caption(text: str, tokenizer, max_len: int) -> dict[str, np.ndarray]:
    """One caption's ``text`` ids (padded to ``max_len``) and ``text_len``."""
    ids, lengths = tokenizer.encode_batch([text], max_len)
    return {"text": ids[0], "text_len": lengths[0]}


def build(config, tokenizer) -> ContrastiveData:
    """Grain pipelines of ``{"image": (B,S,S,3) uint8, "text": (B,L), "text_len": (B,)}``, the
    captions encoded by ``tokenizer`` to ``model.text.max_len`` ids."""
    from jaxmodels.data import pipeline

    d, max_len, size = config.data, config.model.text.max_len, config.data.image_size
    if d.name in image_text_sources.NAMES:
        return build_files(config, tokenizer)
    train, held_out, tasks = embedded_splits(d)
    n = d.retrieval_size

    def source(split):
        return pipeline.ArraySource(pair_arrays(split, tokenizer, max_len))

    return ContrastiveData(
        pipeline.iterator_fn(source(train), config, train=True),
        pipeline.iterator_fn(source(held_out), config, train=False),
        (size, size, 3),
        tasks,
        PairSplit(held_out.images[:n], held_out.captions[:n]),
        tokenizer,
    )


def build_files(config, tokenizer) -> ContrastiveData:
    """Webdataset shards, a caption table or a TFDS dataset (``data.image_text_sources``):
    recall@K on the first ``data.retrieval_size`` held-out pairs, no zero-shot task."""
    size = config.data.image_size
    encode = functools.partial(
        encode_caption, tokenizer=tokenizer, max_len=config.model.text.max_len
    )
    data = image_text_sources.streamed(config, encode, config.data.retrieval_size)
    return ContrastiveData(data.train, data.eval, (size, size, 3), {}, data.held_out, tokenizer)
