"""Image–caption sources shared by image–text families: rendered shapes and TFDS caption pairs.

- :func:`render_shapes`: procedurally rendered scenes of coloured shapes (nothing downloaded),
  each with its structured :class:`Scene` (the objects and, for two objects, their spatial
  relation) and a plain description, e.g. "a red circle left of a blue square". A family
  writes its own captions or prompts from the scenes.
- :class:`PairSplit`: uint8 images with one caption string each; :func:`concat_splits`.
- :func:`tfds_pairs`: a user's prepared TFDS caption dataset as ``{"image", "captions"}``
  records (:class:`TfdsCaptions`; nested caption features such as COCO's ``captions/text``);
  :func:`as_captions` turns any caption field into a list of strings or fails naming it.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from jaxmodels.data.transforms import BadRecord

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 80, 230),
    "yellow": (230, 210, 40),
}
SHAPES = ("circle", "square", "triangle")
RELATIONS = ("left of", "right of", "above", "below")  # of the first object w.r.t. the second


@dataclasses.dataclass(frozen=True)
class Scene:
    """What a rendered image shows: ``(colour, shape)`` objects and the first's relation."""

    objects: tuple[tuple[str, str], ...]
    relation: str | None = None  # None for a one-object scene

    def description(self) -> str:
        """Plain words: "a red circle" or "a red circle left of a blue square"."""
        words = [f"a {color} {shape}" for color, shape in self.objects]
        return words[0] if self.relation is None else f"{words[0]} {self.relation} {words[1]}"


@dataclasses.dataclass(frozen=True)
class PairSplit:
    """Images with one caption each (row i of ``images`` is described by ``captions[i]``)."""

    images: np.ndarray  # uint8 (N, S, S, 3)
    captions: tuple[str, ...]


def concat_splits(*splits: PairSplit) -> PairSplit:
    return PairSplit(
        np.concatenate([s.images for s in splits]),
        tuple(c for s in splits for c in s.captions),
    )


# ----------------------------------------------------------------------------------------------
# Rendered shapes
# ----------------------------------------------------------------------------------------------


def shape_mask(shape: str, cy: float, cx: float, r: float, size: int) -> np.ndarray:
    """Boolean (size, size) mask of a circle, square or upward triangle of radius ``r``."""
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
        shade = np.asarray(COLORS[color], np.float32) * rng.uniform(0.8, 1.0)
        img[shape_mask(shape, cy, cx, r, size)] = shade
    return img.clip(0, 255).astype(np.uint8)


def _random_object(rng) -> tuple[str, str]:
    return list(COLORS)[rng.integers(len(COLORS))], SHAPES[rng.integers(len(SHAPES))]


def _one_object(size, rng) -> tuple[np.ndarray, Scene]:
    color, shape = _random_object(rng)
    r = rng.uniform(0.2, 0.3) * size
    cy, cx = rng.uniform(r + 1, size - r - 1, size=2)
    return render_objects([(shape, color, cy, cx, r)], size, rng), Scene(((color, shape),))


def _two_objects(size, rng) -> tuple[np.ndarray, Scene]:
    rel = RELATIONS[rng.integers(len(RELATIONS))]
    r = rng.uniform(0.12, 0.17) * size
    axis = 1 if rel in ("left of", "right of") else 0  # the axis the relation constrains
    low, high = (r + 1, size / 2 - r), (size / 2 + r, size - r - 1)  # centres >= 2r apart
    first, second = (low, high) if rel in ("left of", "above") else (high, low)
    pos = rng.uniform(r + 1, size - r - 1, size=(2, 2))
    pos[0, axis], pos[1, axis] = rng.uniform(*first), rng.uniform(*second)
    objects = (_random_object(rng), _random_object(rng))
    drawn = [(s, c, pos[k, 0], pos[k, 1], r) for k, (c, s) in enumerate(objects)]
    return render_objects(drawn, size, rng), Scene(objects, rel)


@functools.lru_cache(maxsize=8)
def render_shapes(n: int, size: int = 32, seed=0) -> tuple[np.ndarray, tuple[Scene, ...]]:
    """``n`` scenes on ``size`` px: even rows show one object, odd rows two in a relation.

    Returns uint8 images (n, size, size, 3) and their scenes. ``seed`` is anything
    ``np.random.default_rng`` takes that is hashable (an int or a tuple of ints).
    """
    rng = np.random.default_rng(seed)
    drawn = [(_one_object if i % 2 == 0 else _two_objects)(size, rng) for i in range(n)]
    return np.stack([img for img, _ in drawn]), tuple(scene for _, scene in drawn)


# ----------------------------------------------------------------------------------------------
# Captions of real datasets
# ----------------------------------------------------------------------------------------------


def as_captions(value, where: str) -> list[str]:
    """A caption field as a non-empty list of strings (UTF-8 bytes are decoded).

    ``value`` is one caption or a sequence of them (COCO's five). A structured value (a dict of
    features) is a configuration error, a ``ValueError``; a missing, empty, undecodable or
    non-string caption is a :class:`BadRecord`. Both name ``where``: a caption is never the
    ``repr`` of some other value.
    """
    if isinstance(value, dict):
        raise ValueError(
            f"{where} holds the features {sorted(value)}, not captions: name the caption "
            "feature inside it with '/' (COCO: data.text_key='captions/text')"
        )
    if isinstance(value, str | bytes | np.str_ | np.bytes_):
        value = [value]
    elif not isinstance(value, list | tuple | np.ndarray) or np.ndim(value) != 1:
        raise BadRecord(f"{where} holds {type(value).__name__} {value!r:.60}, not a caption")
    out = []
    for v in value:
        if isinstance(v, bytes | np.bytes_):
            try:
                v = bytes(v).decode("utf-8")
            except UnicodeDecodeError as e:
                raise BadRecord(f"{where}: the caption is not UTF-8 ({e})") from e
        if not isinstance(v, str):
            raise BadRecord(f"{where} holds {type(v).__name__} {v!r:.60}, not a caption string")
        if not v.strip():
            raise BadRecord(f"{where}: empty caption")
        out.append(str(v))
    if not out:
        raise BadRecord(f"{where}: no caption")
    return out


def feature(record: dict, key: str, where: str):
    """``record[a][b]`` for ``key = "a/b"``: a TFDS sequence of dicts decodes to a dict of lists."""
    value = record
    for part in key.split("/"):
        if not isinstance(value, dict) or part not in value:
            fields = sorted(value) if isinstance(value, dict) else type(value).__name__
            raise ValueError(f"{where}: no feature {key!r} (at {part!r}: {fields})")
        value = value[part]
    return value


class TfdsCaptions:
    """A prepared TFDS dataset's records as ``{"image", "captions", "where"}``.

    ``image_key`` names a uint8 image (or an encoded ``Image`` feature read undecoded) and
    ``text_key`` the caption feature; ``/`` steps into nested features, e.g. COCO's
    ``captions/text`` (five strings an image).
    """

    def __init__(self, source, image_key: str, text_key: str, name: str = "tfds"):
        self.source, self.image_key, self.text_key, self.name = source, image_key, text_key, name

    def __len__(self):
        return len(self.source)

    def __repr__(self):
        return f"TfdsCaptions({self.name}, {len(self)} records)"

    def __getitem__(self, i):
        record, where = self.source[i], f"{self.name}[{i}]"
        image = feature(record, self.image_key, where)
        captions = feature(record, self.text_key, where)
        return {
            "image": image,
            "captions": as_captions(captions, f"{where}[{self.text_key!r}]"),
            "where": where,
        }


def tfds_pairs(name: str, split: str, data_dir, image_key: str, text_key: str) -> TfdsCaptions:
    """A prepared TFDS caption dataset; an encoded ``Image`` feature is read without decoding
    (Pillow decodes it later, at the scale the crop needs)."""
    from jaxmodels.data.pipeline import tfds_source

    return TfdsCaptions(
        tfds_source(name, split, data_dir, undecoded=(image_key,)),
        image_key,
        text_key,
        f"tfds {name}/{split}",
    )
