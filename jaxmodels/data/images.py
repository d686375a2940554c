"""Images from the user's own files, for the image generative families (flows, diffusion).

Readers behind :mod:`jaxmodels.data.image_data`, each reading one image at a time so that a
dataset larger than memory trains:

- :func:`list_folder`: the PNG/JPEG files of a folder, sorted, either directly in it
  (unlabelled) or in class subfolders (label i is the i-th subfolder name in sorted order).
- :func:`open_array`: a uint8 ``.npy`` (memory-mapped: rows are read when indexed) or
  ``.npz`` (one array, read whole: zip members cannot be mapped), as (N, H, W, C).
- :func:`decode` and :func:`fit`: one file as a Pillow image; converted to grey or RGB,
  resized and centre-cropped to a square side.

Anything else fails with an error naming the offending file: a dtype other than uint8, a file
that cannot be decoded, a pickled array (arrays are read with ``allow_pickle=False``).
``split_rows`` gives the seeded held-out split; ``save_grid`` writes a batch of images as one
PNG and ``save_scatter`` 2-D points as a scatter plot.
"""

from __future__ import annotations

import os

import numpy as np

SPLITS = ("train", "eval")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy", ".npz")


def split_rows(n: int, split: str, holdout: float, seed: int = 0) -> np.ndarray:
    """Row indices of ``split``: a fixed permutation from ``seed``, first ``holdout`` held out."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: choose one of {SPLITS}")
    if not 0 < holdout < 1:
        raise ValueError(f"config.data.holdout={holdout!r} must be in (0, 1)")
    n_eval = int(n * holdout)
    if n_eval == 0:
        raise ValueError(
            f"config.data.holdout={holdout!r} holds out {n_eval} of the {n} examples; the "
            f"held-out split needs at least one (holdout >= {1 / n:.3g})"
        )
    order = np.random.default_rng(seed).permutation(n)
    return order[n_eval:] if split == "train" else order[:n_eval]


GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # Pillow modes read as one channel


def _as_nhwc(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype != np.uint8:
        raise ValueError(f"{name}: images must be uint8 (0..255), got dtype {array.dtype}")
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise ValueError(f"{name}: expected shape (N, H, W) or (N, H, W, 1|3), got {array.shape}")
    return array


def open_array(path: str) -> np.ndarray:
    """uint8 (N, H, W, C) of an ``.npy`` (memory-mapped) or a one-array ``.npz`` (read)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"data.path={path!r} does not exist")
    if not path.lower().endswith(ARRAY_SUFFIXES):
        raise ValueError(
            f"{path}: expected a directory of PNG/JPEG images or a {'/'.join(ARRAY_SUFFIXES)} file"
        )
    mmap = "r" if path.lower().endswith(".npy") else None
    try:
        data = np.load(path, mmap_mode=mmap, allow_pickle=False)
    except (OSError, ValueError) as e:  # corrupt file, or an object array needing pickle
        raise ValueError(f"{path}: cannot read it as a numpy array ({e})") from e
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if len(data.files) != 1:
                raise ValueError(f"{path}: the .npz must hold one array, found {data.files}")
            data = data[data.files[0]]
    return _as_nhwc(data, path)


def list_folder(path: str) -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...]]:
    """``(files, labels, classes)`` of an image folder: files relative to ``path``, sorted.

    Images directly in ``path`` are unlabelled (``classes`` is empty, labels 0). Otherwise every
    subfolder holding images (searched recursively) is a class, named by the subfolder, and its
    images get the index of that name in sorted order. Hidden entries (``.name``) are skipped.
    ``path`` is local or in an object store (``gs://``, listed through ``etils.epath``).
    """
    from etils import epath

    root = epath.Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"{path}: not a directory")
    found = []  # (key, relative path): a folder's own files sort before its sub-folders'
    for here, dirs, names in root.walk():
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # pruned where the walk allows
        parts = _below(root, here)
        if any(p.startswith(".") for p in parts):
            continue
        for name in names:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                key = (*((1, p) for p in parts), (0, name))
                found.append((key, "/".join((*parts, name))))
    files = [f for _, f in sorted(found)]
    top = [f for f in files if "/" not in f]
    classes = tuple(sorted({f.split("/")[0] for f in files if "/" in f}))
    if top and classes:
        raise ValueError(
            f"{root / top[0]}: {path} holds images both directly and in class "
            f"subfolders ({', '.join(classes)}); put every image in a class subfolder, or none"
        )
    if not files:
        raise ValueError(f"{path}: no {'/'.join(IMAGE_SUFFIXES)} files in this directory")
    if top:
        return tuple(top), np.zeros(len(top), np.int32), ()
    labels = np.searchsorted(classes, [f.split("/")[0] for f in files]).astype(np.int32)
    return tuple(files), labels, classes


def _below(root, here) -> tuple[str, ...]:
    """The folder names from ``root`` down to ``here``, a folder of its walk (which names an
    object store's folders without their scheme: ``bkt/dir`` for ``gs://bkt/dir``)."""

    def bare(p) -> str:
        return os.fspath(p).split("://", 1)[-1].strip("/")

    return tuple(p for p in bare(here)[len(bare(root)) :].split("/") if p)


def decode(path: str):
    """The Pillow image of ``path``, decoded (a bad file fails naming it)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: cannot decode the image ({e})") from e


def channels_of(img) -> int:
    """1 for a grey Pillow image (modes :data:`GREY_MODES`), 3 for anything else."""
    return 1 if img.mode in GREY_MODES else 3


def fit(img, size: int, channels: int) -> np.ndarray:
    """A Pillow image as uint8 (size, size, channels): grey (Pillow's "L", ITU-R 601-2 luma) or
    RGB, the centred square of side min(H, W) resized to ``size`` with Pillow's bicubic filter,
    which widens its support when shrinking (antialiased). ``size`` 0 keeps (H, W)."""
    from PIL import Image

    img = img.convert("L" if channels == 1 else "RGB")
    if size and img.size != (size, size):
        w, h = img.size
        side = min(w, h)
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        img = img.resize((size, size), Image.Resampling.BICUBIC, box=box)
    x = np.asarray(img)
    return x[..., None] if x.ndim == 2 else x


def save_grid(images_BxHxWxC, path: str, nrow: int = 10, scale: int = 4) -> None:
    """Writes images with values in [0, 1] as one PNG grid, each pixel ``scale`` x ``scale``."""
    from PIL import Image

    images = np.clip(np.asarray(images_BxHxWxC, np.float32), 0, 1)
    n, h, w, c = images.shape
    rows = -(-n // nrow)
    grid = np.ones((rows * (h + 1) + 1, nrow * (w + 1) + 1, c), np.float32)
    for i, img in enumerate(images):
        r, col = divmod(i, nrow)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + col * (w + 1) : 1 + col * (w + 1) + w] = img
    grid = np.kron(grid, np.ones((scale, scale, 1), np.float32))
    pixels = np.round(grid * 255).astype(np.uint8)
    Image.fromarray(pixels[..., 0] if c == 1 else pixels).save(path)


def save_scatter(points_Bx2, path: str, reference=None) -> None:
    """Writes 2-D samples (over ``reference`` data points in grey, if given) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if reference is not None:
        ax.scatter(*np.asarray(reference).T, s=2, c="0.7", label="data")
    ax.scatter(*np.asarray(points_Bx2).T, s=2, c="C0", label="samples")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
