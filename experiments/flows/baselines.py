"""Reference points for a flow's held-out bits/dim on a user's images, on the family's own split.

    python experiments/flows/baselines.py --config experiments/flows/realnvp.py --path x.npy

- **per-pixel histogram**: every pixel position its own categorical over the L levels (counts on
  the training split, add-``alpha`` smoothing), pixels independent. A discrete model: its
  -log2 P(x) / D is directly comparable with a flow's bits/dim bound (docs/flows.md).
- **Gaussian**: a full-covariance (and a diagonal) Gaussian fitted by maximum likelihood to the
  dequantised training images u = (x + v) / L, scored as the flows are,
  -(log p(u) - D log L) / (D log 2).
"""

import argparse
import math

import numpy as np
from scipy import stats

from jaxmodels.config import load_config
from jaxmodels.data.image_data import image_data


def histogram_bits(train_BxD: np.ndarray, eval_BxD: np.ndarray, levels: int, alpha: float):
    """Held-out bits/dim of independent per-pixel categoricals (add-``alpha`` smoothing)."""
    d = train_BxD.shape[1]
    counts_DxL = np.stack([np.bincount(train_BxD[:, j], minlength=levels) for j in range(d)])
    p_DxL = (counts_DxL + alpha) / (counts_DxL.sum(1, keepdims=True) + alpha * levels)
    return float(-np.log2(p_DxL[np.arange(d)[None], eval_BxD]).mean())


def gaussian_bits(train_BxD: np.ndarray, eval_BxD: np.ndarray, levels: int, seed: int = 0):
    """Held-out bits/dim of a full-covariance and a diagonal Gaussian on dequantised pixels."""
    rng = np.random.default_rng(seed)
    u_train = (train_BxD + rng.random(train_BxD.shape)) / levels
    u_eval = (eval_BxD + rng.random(eval_BxD.shape)) / levels
    d = u_train.shape[1]
    mean, cov = u_train.mean(0), np.cov(u_train, rowvar=False, bias=True)
    full = stats.multivariate_normal(mean, cov).logpdf(u_eval)
    diag = stats.norm(mean, np.sqrt(np.diag(cov))).logpdf(u_eval).sum(-1)
    return [float((-(lp - d * math.log(levels)) / (d * math.log(2))).mean()) for lp in (full, diag)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="experiments/flows/realnvp.py")
    parser.add_argument("--path", required=True, help="the images (.npy/.npz or a folder)")
    parser.add_argument("--alpha", type=float, default=0.5, help="histogram smoothing")
    args = parser.parse_args()
    config = load_config(args.config)
    config.data.path = args.path
    data = image_data(config.data)
    train, held = (np.asarray(data.split(s).images[:]) for s in ("train", "eval"))
    train, held = (x.reshape(len(x), -1).astype(np.int64) for x in (train, held))
    print(f"{len(train)} training / {len(held)} held-out images, D = {train.shape[1]}")
    hist = histogram_bits(train, held, data.levels, args.alpha)
    print(f"per-pixel histogram (alpha {args.alpha}): {hist:.3f} bits/dim")
    full, diag = gaussian_bits(train, held, data.levels)
    print(f"full-covariance Gaussian: {full:.3f} bits/dim; diagonal Gaussian: {diag:.3f}")


if __name__ == "__main__":
    main()
