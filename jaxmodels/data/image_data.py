"""One description of the data every image generative family reads (diffusion, flows).

:func:`image_data` turns ``config.data`` (the keys of :func:`data_config`) into a frozen
:class:`ImageData`: which source (the embedded digits or 2-D toy points, the user's ``.npy`` /
``.npz`` array, a folder of images), its integer levels L per channel, the shape of one
example, the class names when the data is labelled, and the held-out split (the fraction
``data.holdout`` of a permutation seeded by ``data.split_seed``, the same rows in every family).
``ImageData.split("train" | "eval")`` is that split as a grain random-access source of
``{"image", "label"}`` records (:class:`Split`): uint8 (H, W, C) images at L levels, or float32
(2,) points, with int32 labels. Files are decoded only when a record is read, so a folder
larger than memory trains; a family scales the levels its own way.

Images are brought to ``data.image_size`` (a square side): the digits by nearest-neighbour
(the 17 levels stay exact), arrays and folders by an antialiased bicubic resize of the centred
square (:func:`jaxmodels.data.images.fit`), for training and evaluation alike, so every read
of a record gives the same pixels (resuming mid-epoch repeats nothing and skips nothing).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from jaxmodels.data import digits, images, toy2d

NAMES = ("digits", "toy2d")  # config.data.name: the embedded sources
SPLITS = images.SPLITS  # "train", "eval"


def data_config():
    """The ``config.data`` keys :func:`image_data` reads (every key commented)."""
    import ml_collections

    d = ml_collections.ConfigDict()
    d.name = "digits"  # digits | toy2d (embedded); ignored when data.path is set
    d.path = ""  # your images: a folder (class subfolders = labels) or a uint8 .npy/.npz
    d.image_size = 0  # square side images are brought to; 0: the source's (digits: 8)
    d.channels = 0  # 1 grey | 3 RGB; 0: the source's (a folder: its first image's)
    d.holdout = 0.2  # fraction held out for evaluation (eval loss, FD, bits/dim)
    d.split_seed = 0  # seeds the held-out split (0: the digits split every family uses)
    d.toy = "ring"  # toy2d: ring | grid
    d.num_points = 8192  # toy2d: points per split (eval draws a fresh set of this size)
    return d


@dataclasses.dataclass(frozen=True)
class ImageData:
    """What a family needs to know about its data; :meth:`split` reads it."""

    source: str  # digits | toy2d (embedded) | array (.npy/.npz) | folder
    shape: tuple[int, ...]  # one example: (H, W, C) images, (2,) points
    levels: int  # integer levels per channel: 17 digits, 256 files; 0: continuous points
    classes: tuple[str, ...] = ()  # label i names classes[i]; () when unlabelled
    holdout: float = 0.2  # fraction of the rows held out ("eval")
    split_seed: int = 0  # seeds the permutation that picks the held-out rows
    path: str = ""  # array: the file; folder: the directory
    toy: str = ""  # toy2d: the mixture's name
    num_points: int = 0  # toy2d: points per split
    image_size: int = 0  # data.image_size: a folder's images must all be the first's size at 0
    channels: int = 0  # data.channels: a folder's images may not have more than the first's at 0
    files: tuple[str, ...] = dataclasses.field(default=(), repr=False)  # folder, sorted
    labels: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> Split:
        """The ``name`` split ("train" or "eval") as records; files are read lazily."""
        if name not in SPLITS:
            raise ValueError(f"split {name!r}: choose one of {SPLITS}")
        if self.source == "toy2d":  # eval: a fresh draw of the same size
            points = toy2d.points(self.toy, self.num_points, self.split_seed + (name != "train"))
            return Split(points, np.zeros(len(points), np.int32))
        if self.source == "digits":
            x, labels = digits.digits(name, self.holdout, self.split_seed)
            x = digits.upsample_nearest(x, self.shape[0]) if self.shape[0] != 8 else x
            return Split(x[..., None], labels)
        if self.source == "array":
            reader = ArrayReader(self.path, self.shape)
            labels = np.zeros(reader.count, np.int32)
        else:
            reader = FolderReader(self.path, self.files, self.shape, self.image_size, self.channels)
            labels = self.labels
        rows = images.split_rows(len(labels), name, self.holdout, self.split_seed)
        return Split(LazyImages(reader, rows, self.shape), labels[rows])


class Split:
    """One split: ``images`` (an (N, ...) array, or :class:`LazyImages` decoding on access) and
    int32 ``labels``; as a grain source, record i is ``{"image": images[i], "label": ...}``."""

    def __init__(self, images_B, labels_B: np.ndarray):
        self.images, self.labels = images_B, labels_B

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {"image": self.images[i], "label": self.labels[i]}

    def __repr__(self) -> str:
        return f"Split({len(self)} x {self.images.shape[1:]})"


class LazyImages:
    """(N, H, W, C) uint8 images read on access: ``x[i]`` one image, ``x[rows]`` (a slice or an
    index array) a stacked batch; ``read(row)`` decodes row ``row`` of the whole source."""

    def __init__(self, read, rows: np.ndarray, shape: tuple[int, ...]):
        self.read, self.rows = read, rows
        self.shape, self.dtype = (len(rows), *shape), np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.read(int(self.rows[index]))
        rows = self.rows[index]
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        for k, row in enumerate(rows):
            out[k] = self.read(int(row))
        return out


class ArrayReader:
    """Row ``i`` of a uint8 ``.npy``/``.npz`` array at ``shape`` (resized/converted only when
    it differs). The ``.npy`` is memory-mapped on first use in each process (not pickled)."""

    def __init__(self, path: str, shape: tuple[int, ...]):
        self.path, self.shape, self._array = path, shape, None
        self.count = len(self.array)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = images.open_array(self.path)
        return self._array

    def __getstate__(self):
        return {**self.__dict__, "_array": None}

    def __call__(self, row: int) -> np.ndarray:
        x = np.array(self.array[row])
        if x.shape == self.shape:
            return x
        from PIL import Image

        img = Image.fromarray(x[..., 0] if x.shape[-1] == 1 else x)
        size = self.shape[0] if x.shape[:2] != self.shape[:2] else 0
        return images.fit(img, size, self.shape[-1])


class FolderReader:
    """File ``files[i]`` of ``root`` decoded and fitted to ``shape`` (:func:`images.fit`).

    ``image_size`` and ``channels`` are the config's: at 0 the shape is the first image's, and
    an image of another size, or in colour where the first is grey, fails naming itself."""

    def __init__(self, root, files, shape, image_size: int, channels: int):
        self.root, self.files, self.shape = root, files, shape
        self.image_size, self.channels = image_size, channels

    def __call__(self, row: int) -> np.ndarray:
        path = os.path.join(self.root, self.files[row])
        img = images.decode(path)
        (h, w, c), first = self.shape, "the folder's first image"
        if not self.image_size and img.size != (w, h):
            raise ValueError(
                f"{path}: size {img.size[0]}x{img.size[1]} differs from {first} ({w}x{h}); "
                "set config.data.image_size to resize them all"
            )
        if not self.channels and images.channels_of(img) > c:
            raise ValueError(
                f"{path}: a colour image, but {first} is grey; set config.data.channels=3 "
                "(or 1 to read every image as grey)"
            )
        return images.fit(img, self.image_size, c)


def image_data(d) -> ImageData:
    """``config.data`` (keys of :func:`data_config`) -> :class:`ImageData`; ``data.path`` wins
    over ``data.name``. A folder is listed here; of its files only the first is opened."""
    size, channels = d.image_size, d.channels
    if not isinstance(size, int) or size < 0:
        raise ValueError(f"config.data.image_size={size!r} must be an integer >= 0")
    if channels not in (0, 1, 3):
        raise ValueError(f"config.data.channels={channels!r}: choose 1 (grey), 3 (RGB) or 0")
    common = dict(holdout=d.holdout, split_seed=d.split_seed, image_size=size, channels=channels)
    if not 0 < d.holdout < 1:
        raise ValueError(f"config.data.holdout={d.holdout!r} must be in (0, 1)")
    if d.path:
        return _file_data(d.path, size, channels, common)
    if d.name == "digits":
        if channels == 3:
            raise ValueError("config.data.channels=3: the digits are grey (use 0 or 1)")
        side = size or 8
        classes = tuple(str(k) for k in range(10))
        return ImageData("digits", (side, side, 1), digits.LEVELS + 1, classes, **common)
    if d.name == "toy2d":
        toy2d.mixture(d.toy)  # fails naming the choices
        return ImageData("toy2d", (2,), 0, toy=d.toy, num_points=d.num_points, **common)
    raise ValueError(f"config.data.name={d.name!r}: choose one of {NAMES} (or set data.path)")


def _file_data(path: str, size: int, channels: int, common) -> ImageData:
    if not os.path.isdir(path):
        h, w, c = images.open_array(path).shape[1:]
        shape = (size or h, size or w, channels or c)
        return ImageData("array", shape, 256, path=path, **common)
    files, labels, classes = images.list_folder(path)
    first = os.path.join(path, files[0])
    from PIL import Image

    try:
        with Image.open(first) as img:  # the header only
            (w, h), c = img.size, images.channels_of(img)
    except OSError as e:
        raise ValueError(f"{first}: cannot decode the image ({e})") from e
    shape = (size or h, size or w, channels or c)
    return ImageData("folder", shape, 256, classes, path=path, files=files, labels=labels, **common)
