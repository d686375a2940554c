"""Embedded BLIP data: rendered scenes with compositional captions, noisy pairs, CapFilt files.

Each scene is either a *count* scene, ``n`` objects of one colour and shape ("three red
circles"), or a *relation* scene, two groups on either side of the image ("a blue square above
two green triangles"): colours, shapes, counts 1-3 and four spatial relations, so a caption is
right only if every word is. Shapes and colours come from :mod:`jaxmodels.data.image_text`.
Train and held-out scenes are drawn from independent seeds.

Tokens are the grammar's words (:data:`TOKENIZER`, a
:class:`~jaxmodels.data.tokenizers.WordTokenizer`; BOS is BLIP's [DEC], EOS its [SEP]); a word
outside them is refused, naming it. :mod:`jaxmodels.models.blip.tokens` lays the rows out, for
these words or a real tokenizer.
"""

from __future__ import annotations

import functools
import zipfile

import numpy as np

from jaxmodels.data.image_text import COLORS, RELATIONS, SHAPES, render_objects
from jaxmodels.data.tokenizers import WordTokenizer

PROMPT = "a picture of "  # BLIP's captioning prompt (Sec. 4.1)
HALF = (0.5, 0.5, 0.5)  # pixel mean and std that map [0, 1] to [-1, 1]
NUMBERS = ("a", "two", "three")
WORDS = (
    *NUMBERS,
    *COLORS,
    *SHAPES,
    *(f"{s}s" for s in SHAPES),
    *sorted({w for r in RELATIONS for w in r.split()}),
    "picture",
)
TOKENIZER = WordTokenizer(
    WORDS,
    specials=("[CLS]", "[ENC]"),
    hint="; captions of other data need a real tokenizer: set config.data.tokenizer to a "
    "tokenizer.json, a SentencePiece .model or an HF directory (BLIP's: bert-base-uncased)",
)


def _phrase(n: int, color: str, shape: str) -> str:
    return f"{NUMBERS[n - 1]} {color} {shape}{'s' if n > 1 else ''}"


def _place(n, r, box, rng, taken):
    """Centres of ``n`` non-overlapping radius-``r`` objects inside ``box`` (y0, y1, x0, x1)."""
    out = []
    for _ in range(200 * n):
        if len(out) == n:
            break
        cy, cx = rng.uniform(box[0] + r, box[1] - r), rng.uniform(box[2] + r, box[3] - r)
        if all((cy - y) ** 2 + (cx - x) ** 2 > (2.2 * r) ** 2 for y, x in taken + out):
            out.append((cy, cx))
    return out


def _count_scene(size, rng, scale):
    n = int(rng.integers(1, 4))
    shape, color = SHAPES[rng.integers(len(SHAPES))], list(COLORS)[rng.integers(len(COLORS))]
    r = size * scale * rng.uniform(0.09, 0.12)
    centres = _place(n, r, (1, size - 1, 1, size - 1), rng, [])
    objs = [(shape, color, cy, cx, r) for cy, cx in centres]
    return objs, _phrase(len(objs), color, shape)


def _relation_scene(size, rng, scale):
    rel = RELATIONS[rng.integers(len(RELATIONS))]
    r = size * scale * rng.uniform(0.08, 0.1)
    half, full = (1, size / 2 - 1), (1, size - 1)
    other = (size / 2 + 1, size - 1)
    first, second = (half, other) if rel in ("left of", "above") else (other, half)
    objs, words, taken = [], [], []
    for span in (first, second):
        box = (*full, *span) if rel in ("left of", "right of") else (*span, *full)
        n = int(rng.integers(1, 3))
        shape, color = SHAPES[rng.integers(len(SHAPES))], list(COLORS)[rng.integers(len(COLORS))]
        centres = _place(n, r, box, rng, taken)
        taken += centres
        objs += [(shape, color, cy, cx, r) for cy, cx in centres]
        words.append(_phrase(len(centres), color, shape))
    return objs, f"{words[0]} {rel} {words[1]}"


@functools.lru_cache(maxsize=8)
def scenes(n: int, size: int = 32, seed: int = 0, scale: float = 1.0):
    """``n`` rendered scenes: uint8 images (n, size, size, 3) and their captions.

    ``scale`` multiplies the object radii (about 3-4 px at 32 px and scale 1).
    """
    rng = np.random.default_rng(seed)
    images, captions = [], []
    for i in range(n):
        objs, caption = (_count_scene if i % 2 == 0 else _relation_scene)(size, rng, scale)
        images.append(render_objects(objs, size, rng))
        captions.append(caption)
    return np.stack(images), tuple(captions)


def split(name: str, n: int, size: int, seed: int, scale: float = 1.0):
    """The ``train`` or ``eval`` split (independent seeds ``2 * seed`` and ``2 * seed + 1``)."""
    if name not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {name!r}")
    return scenes(n, size, 2 * seed + (name == "eval"), scale)


def corrupt(captions, fraction: float, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Replaces ``fraction`` of the captions by another image's; returns (captions, corrupted).

    A pair counts as corrupted only when the new caption differs from the original.
    """
    rng = np.random.default_rng(seed)
    captions = list(captions)
    idx = rng.choice(len(captions), int(round(fraction * len(captions))), replace=False)
    donors = rng.permutation(idx)
    out = list(captions)
    for i, j in zip(idx, donors, strict=True):
        out[i] = captions[j]
    corrupted = np.asarray([a != b for a, b in zip(out, captions, strict=True)])
    return out, corrupted


def pixels(images_uint8, mean=HALF, std=HALF):
    """uint8 images (numpy or jax) as the model takes them: float32 ``(x / 255 - mean) / std``
    per channel (the defaults: [-1, 1]; an imported BLIP's, its preprocessing's statistics)."""
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return (images_uint8.astype(np.float32) / 255.0 - mean) / std


def save_pairs(path: str, images: np.ndarray, captions) -> None:
    """Writes a (bootstrapped) dataset the ``file`` data config trains on (no pickles)."""
    np.savez(path, images=images, captions=np.asarray(list(captions), dtype=str))


def load_pairs(path: str, image_size: int, key: str = "config.data.path"):
    """Reads a :func:`save_pairs` file: ``(images, captions)``, the images uint8
    ``(N, image_size, image_size, 3)``; errors name the file (``key``) and what does not fit."""
    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{key}={path!r} is not a readable .npz file ({e})") from e
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{key}={path!r} holds one array; save_pairs writes an .npz")
    with f:
        missing = sorted({"images", "captions"} - set(f.files))
        if missing:
            raise ValueError(
                f"{key}={path!r} has no {' or '.join(map(repr, missing))} array (it "
                f"holds {f.files}); save_pairs writes `images` (N, H, W, 3) uint8 and `captions`"
            )
        images, captions = f["images"], [str(c) for c in f["captions"]]
    if len(images) != len(captions):
        raise ValueError(f"{key}={path!r}: {len(images)} images but {len(captions)} captions")
    want = (image_size, image_size, 3)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != want:
        raise ValueError(
            f"{key}={path!r} holds {images.dtype} images of shape {images.shape[1:]}, but "
            f"config.data.image_size={image_size} needs uint8 {want}: resize them, or set "
            "data.image_size to their size (a multiple of model.image.patch_size)"
        )
    return images, captions
