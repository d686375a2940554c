"""(image, caption) data for two-tower models: embedded datasets that need no network.

- ``shapes``: procedurally rendered coloured shapes with compositional captions, e.g.
  "a red circle left of a blue square" (two objects) or "a picture of a green triangle" (one).
- ``digits``: scikit-learn's 8x8 handwritten digits (shipped inside the package), upsampled,
  with caption templates ("a handwritten digit seven").

Each dataset yields uint8 images (N, S, S, 3), caption strings, and zero-shot tasks (held-out
images with class labels, class names and prompt templates). ``tfds_pairs`` reads a user's
prepared TFDS caption dataset instead.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 80, 230),
    "yellow": (230, 210, 40),
}
SHAPES = ("circle", "square", "triangle")
RELATIONS = ("left of", "right of", "above", "below")  # of the first object w.r.t. the second
SHAPE_TEMPLATES = ("a {}", "a picture of a {}", "an image of a {}")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_TEMPLATES = ("a handwritten digit {}", "the number {}", "a drawing of the digit {}")


@dataclasses.dataclass(frozen=True)
class ZeroShotTask:
    """Held-out images with labels, class names and the prompt templates that name them."""

    images: np.ndarray  # uint8 (N, S, S, 3)
    labels: np.ndarray  # int (N,)
    classnames: tuple[str, ...]
    templates: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class PairSplit:
    images: np.ndarray  # uint8 (N, S, S, 3)
    captions: tuple[str, ...]


def _shape_mask(shape: str, cy: float, cx: float, r: float, size: int) -> np.ndarray:
    y, x = np.mgrid[:size, :size] + 0.5
    dy, dx = y - cy, x - cx
    if shape == "circle":
        return dy**2 + dx**2 <= r**2
    if shape == "square":
        return (np.abs(dy) <= 0.85 * r) & (np.abs(dx) <= 0.85 * r)
    # upward triangle: apex at cy - r, base at cy + r
    return (dy <= r) & (dy >= -r) & (np.abs(dx) <= (dy + r) / 2)


def render_objects(objects, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draws ``(shape, colour, cy, cx, r)`` objects on a dark noisy background."""
    img = rng.integers(0, 40, size=(size, size, 3)).astype(np.float32)
    for shape, color, cy, cx, r in objects:
        mask = _shape_mask(shape, cy, cx, r, size)
        shade = np.asarray(COLORS[color], np.float32) * rng.uniform(0.8, 1.0)
        img[mask] = shade
    return img.clip(0, 255).astype(np.uint8)


def _one_object(size, rng):
    shape, color = SHAPES[rng.integers(3)], list(COLORS)[rng.integers(len(COLORS))]
    r = rng.uniform(0.2, 0.3) * size
    cy, cx = rng.uniform(r + 1, size - r - 1, size=2)
    name = f"{color} {shape}"
    template = SHAPE_TEMPLATES[rng.integers(len(SHAPE_TEMPLATES))]
    label = list(COLORS).index(color) * len(SHAPES) + SHAPES.index(shape)
    return render_objects([(shape, color, cy, cx, r)], size, rng), template.format(name), label


def _two_objects(size, rng):
    rel = RELATIONS[rng.integers(len(RELATIONS))]
    r = rng.uniform(0.12, 0.17) * size
    axis = 1 if rel in ("left of", "right of") else 0  # the axis the relation constrains
    low, high = (r + 1, size / 2 - r), (size / 2 + r, size - r - 1)  # centres >= 2r apart
    first, second = (low, high) if rel in ("left of", "above") else (high, low)
    pos = rng.uniform(r + 1, size - r - 1, size=(2, 2))
    pos[0, axis], pos[1, axis] = rng.uniform(*first), rng.uniform(*second)
    objs, words = [], []
    for k in range(2):
        shape, color = SHAPES[rng.integers(3)], list(COLORS)[rng.integers(len(COLORS))]
        objs.append((shape, color, pos[k, 0], pos[k, 1], r))
        words.append(f"a {color} {shape}")
    return render_objects(objs, size, rng), f"{words[0]} {rel} {words[1]}"


@functools.lru_cache(maxsize=4)
def shapes_dataset(n_train: int, n_eval: int, size: int = 32, seed: int = 0):
    """Returns (train PairSplit, eval PairSplit, ZeroShotTask over one-object eval images)."""
    rng = np.random.default_rng(seed)

    def split(n):
        images, captions, labels = [], [], []
        for i in range(n):
            if i % 2 == 0:
                img, cap, lab = _one_object(size, rng)
            else:
                (img, cap), lab = _two_objects(size, rng), -1
            images.append(img)
            captions.append(cap)
            labels.append(lab)
        return np.stack(images), tuple(captions), np.asarray(labels)

    train_x, train_c, _ = split(n_train)
    eval_x, eval_c, eval_y = split(n_eval)
    single = eval_y >= 0
    names = tuple(f"{c} {s}" for c in COLORS for s in SHAPES)
    task = ZeroShotTask(eval_x[single], eval_y[single], names, SHAPE_TEMPLATES)
    return PairSplit(train_x, train_c), PairSplit(eval_x, eval_c), task


@functools.lru_cache(maxsize=4)
def digits_dataset(size: int = 32, eval_fraction: float = 0.2, seed: int = 0):
    """scikit-learn digits upsampled to ``size``, one caption per template per training image."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    n_eval = int(len(order) * eval_fraction)
    images = _upsample_digits(digits.images, size)
    labels = digits.target

    def pairs(idx, templates):
        caps = [t.format(DIGIT_NAMES[labels[i]]) for i in idx for t in templates]
        return PairSplit(np.repeat(images[idx], len(templates), axis=0), tuple(caps))

    ev, tr = order[:n_eval], order[n_eval:]
    task = ZeroShotTask(images[ev], labels[ev], DIGIT_NAMES, DIGIT_TEMPLATES)
    return pairs(tr, DIGIT_TEMPLATES), pairs(ev, DIGIT_TEMPLATES[:1]), task


def _upsample_digits(images_Nx8x8: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour upsampling of 0..16 grey levels to uint8 RGB (N, size, size, 3)."""
    idx = (np.arange(size) * images_Nx8x8.shape[1]) // size
    grey = images_Nx8x8[:, idx][:, :, idx] * (255.0 / 16.0)
    return np.repeat(grey[..., None], 3, axis=-1).astype(np.uint8)


def concat_splits(*splits: PairSplit) -> PairSplit:
    return PairSplit(
        np.concatenate([s.images for s in splits]),
        tuple(c for s in splits for c in s.captions),
    )


def tfds_pairs(name: str, split: str, data_dir, image_key: str, text_key: str):
    """A prepared TFDS caption dataset as a random-access source of (image, caption) records."""
    from jaxmodels.data.pipeline import tfds_source

    source = tfds_source(name, split, data_dir)
    return _KeyedSource(source, image_key, text_key)


class _KeyedSource:
    """Renames a TFDS record's image/text fields to ``image``/``text`` (a caption string)."""

    def __init__(self, source, image_key: str, text_key: str):
        self._source, self._image_key, self._text_key = source, image_key, text_key

    def __len__(self):
        return len(self._source)

    def __getitem__(self, i):
        rec = self._source[i]
        for key in (self._image_key, self._text_key):
            if key not in rec:
                raise KeyError(f"TFDS record has no field {key!r}; fields: {sorted(rec)}")
        text = rec[self._text_key]
        text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
        return {"image": np.asarray(rec[self._image_key]), "text": text}


# ----------------------------------------------------------------------------------------------
# Pipelines from config
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ImageTextData:
    """What the two-tower family needs from its data config."""

    train: Callable  # (process_index, process_count) -> iterator of {"image", "text"} batches
    eval: Callable | None  # the same, one pass over held-out pairs
    image_shape: tuple[int, int, int]
    zero_shot: dict[str, ZeroShotTask]  # held-out zero-shot classification tasks by name
    retrieval: PairSplit | None  # held-out pairs for recall@K


def resize_nearest(image: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W[, C]) uint8 image to (size, size, 3)."""
    image = np.asarray(image)
    image = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3]
    rows = (np.arange(size) * image.shape[0]) // size
    cols = (np.arange(size) * image.shape[1]) // size
    return image[rows][:, cols].astype(np.uint8)


def embedded_splits(d) -> tuple[PairSplit, PairSplit, dict[str, ZeroShotTask]]:
    """The embedded ``shapes``, ``digits`` or ``embedded`` (both) dataset at ``d.image_size``."""
    parts = {"embedded": ("shapes", "digits"), "shapes": ("shapes",), "digits": ("digits",)}
    if d.name not in parts:
        raise ValueError(f"config.data.name={d.name!r}: use one of {[*parts, 'tfds']}")
    train, held_out, tasks = [], [], {}
    for part in parts[d.name]:
        if part == "shapes":
            tr, ev, task = shapes_dataset(d.shapes_train, d.shapes_eval, d.image_size, d.seed)
        else:
            tr, ev, task = digits_dataset(d.image_size, seed=d.seed)
        train.append(tr)
        held_out.append(ev)
        tasks[part] = task
    return concat_splits(*train), concat_splits(*held_out), tasks


def build(config) -> ImageTextData:
    """Builds grain pipelines of {"image": uint8 (B,S,S,3), "text": int32 (B,L)} batches."""
    from jaxmodels.data import pipeline
    from jaxmodels.layers.text_encoder import byte_tokenize

    d, max_len, size = config.data, config.model.text.max_len, config.data.image_size

    def iterators(source, shuffle, transform=None):
        def make(index, count):
            return pipeline.make_iterator(
                source,
                global_batch_size=config.train.batch_size,
                seed=config.seed,
                process_index=index,
                process_count=count,
                shuffle=shuffle,
                repeat=shuffle,
                transform=transform,
            )

        return make

    if d.name == "tfds":

        def transform(rec):
            return {
                "image": resize_nearest(rec["image"], size),
                "text": byte_tokenize([rec["text"]], max_len)[0],
            }

        src = [
            tfds_pairs(d.tfds_name, s, d.tfds_dir or None, d.image_key, d.text_key)
            for s in (d.train_split, d.eval_split)
        ]
        held = [transform(src[1][i]) for i in range(min(len(src[1]), d.retrieval_size))]
        retrieval = PairSplit(
            np.stack([h["image"] for h in held]), tuple(src[1][i]["text"] for i in range(len(held)))
        )
        return ImageTextData(
            iterators(src[0], True, transform),
            iterators(src[1], False, transform),
            (size, size, 3),
            {},
            retrieval,
        )

    train, held_out, tasks = embedded_splits(d)

    def source(split):
        return pipeline.ArraySource(
            {"image": split.images, "text": byte_tokenize(split.captions, max_len)}
        )

    retrieval = PairSplit(
        held_out.images[: d.retrieval_size], held_out.captions[: d.retrieval_size]
    )
    return ImageTextData(
        iterators(source(train), True),
        iterators(source(held_out), False),
        (size, size, 3),
        tasks,
        retrieval,
    )
