"""Images from the user's own files, for the image generative families (flows, diffusion).

``load_images(path)`` reads a directory of PNG/JPEG files or an ``.npy``/``.npz`` array and
returns uint8 (N, H, W, C). Anything else fails with an error naming the offending file: a
dtype other than uint8, images of different sizes, a file that cannot be decoded. Arrays are
read with ``allow_pickle=False``. ``split_rows`` gives the same seeded held-out split as the
embedded digits; ``save_grid`` writes a batch of images as one PNG and ``save_scatter`` 2-D
points as a scatter plot.
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


def _as_nhwc(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype != np.uint8:
        raise ValueError(f"{name}: images must be uint8 (0..255), got dtype {array.dtype}")
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise ValueError(f"{name}: expected shape (N, H, W) or (N, H, W, 1|3), got {array.shape}")
    return array


def _load_array(path: str) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:  # corrupt file, or an object array needing pickle
        raise ValueError(f"{path}: cannot read it as a numpy array ({e})") from e
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if len(data.files) != 1:
                raise ValueError(f"{path}: the .npz must hold one array, found {data.files}")
            data = data[data.files[0]]
    return _as_nhwc(data, path)


def _load_file(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            grey = img.mode in ("L", "LA", "I", "I;16", "1")
            return np.asarray(img.convert("L" if grey else "RGB"))
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"{path}: cannot decode the image ({e})") from e


def _load_directory(path: str) -> np.ndarray:
    names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        raise ValueError(f"{path}: no {'/'.join(IMAGE_SUFFIXES)} files in this directory")
    images, first = [], None
    for name in names:
        file = os.path.join(path, name)
        img = _load_file(file)
        if first is None:
            first = (name, img.shape)
        elif img.shape[:2] != first[1][:2]:
            raise ValueError(
                f"{file}: size {img.shape[1]}x{img.shape[0]} differs from "
                f"{first[0]} ({first[1][1]}x{first[1][0]}); resize the images to one size"
            )
        images.append(img)
    if len({im.ndim for im in images}) > 1:  # a mix of grey and colour: promote grey to RGB
        images = [im if im.ndim == 3 else np.repeat(im[..., None], 3, -1) for im in images]
    return _as_nhwc(np.stack(images), path)


def load_images(path: str) -> np.ndarray:
    """uint8 (N, H, W, C) from a directory of PNG/JPEG files or an ``.npy``/``.npz`` array."""
    if os.path.isdir(path):
        return _load_directory(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data.path={path!r} does not exist")
    if path.lower().endswith(ARRAY_SUFFIXES):
        return _load_array(path)
    raise ValueError(
        f"{path}: expected a directory of PNG/JPEG images or a {'/'.join(ARRAY_SUFFIXES)} file"
    )


def save_grid(images_NxHxWxC, path: str, nrow: int = 10, scale: int = 4) -> None:
    """Writes images with values in [0, 1] as one PNG grid, each pixel ``scale`` x ``scale``."""
    from PIL import Image

    images = np.clip(np.asarray(images_NxHxWxC, np.float32), 0, 1)
    n, h, w, c = images.shape
    rows = -(-n // nrow)
    grid = np.ones((rows * (h + 1) + 1, nrow * (w + 1) + 1, c), np.float32)
    for i, img in enumerate(images):
        r, col = divmod(i, nrow)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + col * (w + 1) : 1 + col * (w + 1) + w] = img
    grid = np.kron(grid, np.ones((scale, scale, 1), np.float32))
    pixels = np.round(grid * 255).astype(np.uint8)
    Image.fromarray(pixels[..., 0] if c == 1 else pixels).save(path)


def save_scatter(points_Nx2, path: str, reference=None) -> None:
    """Writes 2-D samples (over ``reference`` data points in grey, if given) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if reference is not None:
        ax.scatter(*np.asarray(reference).T, s=2, c="0.7", label="data")
    ax.scatter(*np.asarray(points_Nx2).T, s=2, c="C0", label="samples")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
