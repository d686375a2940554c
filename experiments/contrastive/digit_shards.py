"""Captioned digits as a user's image–text data: webdataset shards and a labelled folder.

Writes what a researcher brings to the image–text families, from a labelled digits set:

- ``OUT/train/{00000..0000K}.tar``: webdataset shards (``key.png`` + ``key.txt``), each image
  captioned by one of the family's digit templates ("the number seven", ...), chosen at random;
- ``OUT/val/00000.tar``: held-out pairs in the same form (retrieval, ``data.eval_urls``);
- ``OUT/heldout/<name>/<i>.png``: the held-out images again as a labelled folder, one subfolder
  per class (``config.zero_shot.dir``), and ``OUT/templates.txt``, the caption templates as
  zero-shot prompts (``config.zero_shot.templates``).

The digits are scikit-learn's 8x8 set by default (nothing to download), or a user's labelled
images: ``--images`` and ``--labels`` as ``.npy`` (uint8 (N, H, W) and int (N,)) or MNIST's
``idx`` files (``.gz`` or not). The last ``--holdout`` fraction of a seeded permutation is held
out.

    python experiments/contrastive/digit_shards.py --out /tmp/digit_shards \\
      --images t10k-images-idx3-ubyte.gz --labels t10k-labels-idx1-ubyte.gz --limit 10000
    jaxmodels train --config experiments/contrastive/siglip.py --workdir runs/siglip_mnist \\
      --config.data.name=webdataset \\
      --config.data.urls='/tmp/digit_shards/train/{00000..00007}.tar' \\
      --config.data.eval_urls=/tmp/digit_shards/val/00000.tar \\
      --config.zero_shot.dir=/tmp/digit_shards/heldout \\
      --config.zero_shot.templates=/tmp/digit_shards/templates.txt

(the script prints the exact command for the shards it wrote).
"""

from __future__ import annotations

import argparse
import gzip
import io
import os

import numpy as np
from PIL import Image

from jaxmodels.data.webdataset import write_shard
from jaxmodels.models.contrastive.data import DIGIT_NAMES, DIGIT_TEMPLATES


def read_array(path: str) -> np.ndarray:
    """A ``.npy`` array, or an MNIST ``idx`` file (big-endian header: magic, then dims)."""
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(int)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def labelled_digits(images: str | None, labels: str | None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, H, W) images and their int labels: the user's files, or scikit-learn's digits
    (grey levels 0..16 stretched to 0..255)."""
    if images is None:
        from sklearn.datasets import load_digits

        d = load_digits()
        return np.round(d.images * (255 / 16)).astype(np.uint8), d.target
    x, y = read_array(images), read_array(labels).astype(np.int64)
    if x.dtype != np.uint8 or x.ndim != 3 or len(x) != len(y):
        raise ValueError(f"{images}: expected uint8 (N, H, W) beside {len(y)} labels, got "
                         f"{x.dtype} {x.shape}")  # fmt: skip
    return x, y


def png(image_HxW: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image_HxW).save(buf, format="PNG")
    return buf.getvalue()


def write(out: str, x, y, holdout: float, per_shard: int, seed: int) -> dict[str, str]:
    """Writes the shards, the labelled folder and the templates; returns their config keys."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_held = max(1, int(round(holdout * len(x))))
    train, held = order[:-n_held], order[-n_held:]

    def records(rows):
        for i in rows:
            caption = DIGIT_TEMPLATES[rng.integers(len(DIGIT_TEMPLATES))].format(DIGIT_NAMES[y[i]])
            yield f"{i:06d}", {"png": png(x[i]), "txt": caption.encode()}

    os.makedirs(f"{out}/train", exist_ok=True)
    os.makedirs(f"{out}/val", exist_ok=True)
    shards = [train[s : s + per_shard] for s in range(0, len(train), per_shard)]
    for k, rows in enumerate(shards):
        write_shard(f"{out}/train/{k:05d}.tar", records(rows))
    write_shard(f"{out}/val/00000.tar", records(held))
    for i in held:
        folder = f"{out}/heldout/{DIGIT_NAMES[y[i]]}"
        os.makedirs(folder, exist_ok=True)
        with open(f"{folder}/{i:06d}.png", "wb") as f:
            f.write(png(x[i]))
    with open(f"{out}/templates.txt", "w") as f:
        f.write("".join(t + "\n" for t in DIGIT_TEMPLATES))
    last = len(shards) - 1
    urls = f"'{out}/train/{{00000..{last:05d}}}.tar'" if last else f"{out}/train/00000.tar"
    return {
        "data.name": "webdataset",
        "data.urls": urls,
        "data.eval_urls": f"{out}/val/00000.tar",
        "zero_shot.dir": f"{out}/heldout",
        "zero_shot.templates": f"{out}/templates.txt",
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder to write (must not exist)")
    p.add_argument("--images", help=".npy uint8 (N, H, W) or MNIST idx; default: sklearn digits")
    p.add_argument("--labels", help=".npy int (N,) or MNIST idx (with --images)")
    p.add_argument("--limit", type=int, default=0, help="use the first N images (0: all)")
    p.add_argument("--holdout", type=float, default=0.2, help="held-out fraction")
    p.add_argument("--per_shard", type=int, default=1000, help="records per training shard")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if (a.images is None) != (a.labels is None):
        p.error("--images and --labels go together")
    if os.path.exists(a.out):
        p.error(f"--out {a.out} exists; choose a new folder")
    x, y = labelled_digits(a.images, a.labels)
    if a.limit:
        x, y = x[: a.limit], y[: a.limit]
    keys = write(a.out, x, y, a.holdout, a.per_shard, a.seed)
    flags = " ".join(f"--config.{k}={v}" for k, v in keys.items())
    command = f"jaxmodels train --config experiments/contrastive/siglip.py --workdir DIR {flags}"
    print(f"wrote {len(x)} captioned images under {a.out}; train with\n{command}")


if __name__ == "__main__":
    main()
