"""Offline sample-quality metrics for any generative family, on arrays only.

- :func:`digits_quality`: Frechet distance on a small classifier's features, plus that
  classifier's accuracy and entropies on generated samples (an offline FID / Inception Score).
  Samples are digits as (N, size, size, 1) in [-1, 1] (:func:`jaxmodels.data.digits.
  minus_one_to_one` maps the data there); the feature extractor is a scikit-learn MLP trained
  on the shared digits (:mod:`jaxmodels.data.digits`), so nothing is downloaded: FD is Heusel
  et al. (2017)'s formula on its hidden-layer activations.
- :func:`mixture_quality`: FD, log-density and mode coverage of points against a known
  Gaussian mixture (the 2-D toys).
"""

from __future__ import annotations

import functools

import numpy as np

from jaxmodels.data import digits


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)) (Heusel et al. 2017, eq. 6)."""
    import warnings

    from scipy import linalg

    with warnings.catch_warnings():  # dead features make covariances singular
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov1 @ cov2)
        if not np.isfinite(covmean).all():  # pytorch-fid's fallback: regularise both
            offset = np.eye(len(cov1)) * 1e-6
            covmean = linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def feature_stats(features):
    """Mean and (unbiased) covariance of a (N, F) feature matrix."""
    features = np.asarray(features, np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance_of(features_a, features_b) -> float:
    """FD between two feature sets."""
    return frechet_distance(*feature_stats(features_a), *feature_stats(features_b))


class DigitsClassifier:
    """A scikit-learn MLP on flattened digits in [-1, 1]; features are its hidden ReLU layer."""

    def __init__(self, images, labels, hidden: int = 64, seed: int = 0):
        from sklearn.neural_network import MLPClassifier

        self.clf = MLPClassifier((hidden,), max_iter=600, random_state=seed, alpha=1e-3)
        self.clf.fit(self._flat(images), labels)

    @staticmethod
    def _flat(images):
        images = np.asarray(images, np.float64)
        return images.reshape(len(images), -1)

    def features(self, images):
        """Hidden-layer activations relu(x W_0 + b_0), shape (N, hidden)."""
        x = self._flat(images)
        return np.maximum(x @ self.clf.coefs_[0] + self.clf.intercepts_[0], 0)

    def predict_proba(self, images):
        return self.clf.predict_proba(self._flat(images))


def digits_images(split: str, size: int = 8, split_seed: int = 0):
    """The shared digits ``split`` (its held-out rows seeded by ``split_seed``) in the
    evaluator's convention: (N, size, size, 1) float32 in [-1, 1], and int32 labels."""
    images, labels = digits.digits(split, seed=split_seed)
    return digits.minus_one_to_one(images, size), labels


@functools.lru_cache(maxsize=4)
def digits_classifier(
    size: int = 8, seed: int = 0, split_seed: int = 0
) -> tuple[DigitsClassifier, np.ndarray]:
    """The classifier trained on the training split, and the held-out images for reference FD.

    Trained once per process (a second on a CPU) and memoised; ``size`` is the image side,
    ``split_seed`` the data's (``data.split_seed``), so the held-out digits stay held out.
    """
    clf = DigitsClassifier(*digits_images("train", size, split_seed), seed=seed)
    return clf, digits_images("eval", size, split_seed)[0]


@functools.lru_cache(maxsize=4)
def digits_fd_floor(size: int = 8, split_seed: int = 0) -> float:
    """FD between the training and held-out digits: what a perfect generator would score."""
    clf, held = digits_classifier(size, split_seed=split_seed)
    train = digits_images("train", size, split_seed)[0]
    return frechet_distance_of(clf.features(train), clf.features(held))


def entropy(p, axis=-1):
    """Shannon entropy in nats."""
    p = np.clip(p, 1e-12, 1)
    return -np.sum(p * np.log(p), axis=axis)


def digits_quality(samples, labels=None, size: int = 8, split_seed: int = 0) -> dict[str, float]:
    """FD against held-out digits (and the train/held-out FD as the floor), classifier accuracy on
    the conditioning labels (if given), mean per-sample entropy (low: confident digits) and the
    entropy of the mean prediction (high: all classes present; log 10 = 2.303 is uniform).
    ``split_seed``: the data's held-out split (``data.split_seed``)."""
    clf, held = digits_classifier(size, split_seed=split_seed)
    feats = clf.features(samples)
    probs = clf.predict_proba(samples)
    out = {
        "fd": frechet_distance_of(feats, clf.features(held)),
        "fd_floor": digits_fd_floor(size, split_seed),
        "sample_entropy": float(entropy(probs).mean()),
        "class_entropy": float(entropy(probs.mean(0))),
        "confidence": float(probs.max(-1).mean()),
    }
    if labels is not None:
        out["accuracy"] = float((probs.argmax(-1) == np.asarray(labels)).mean())
    return out


def mixture_quality(samples, mixture, reference) -> dict[str, float]:
    """Quality of points against a known Gaussian mixture (``jaxmodels.samplers.analytic``).

    FD on raw coordinates against ``reference`` points; the mean data log-density of the samples
    and of the reference (higher is sharper; equal means matched); the largest deviation of
    mode occupancy (nearest component by posterior) from the mixture weights.
    """
    samples = np.asarray(samples, np.float32)
    weights = np.asarray(mixture.weights, np.float64)
    component = np.asarray(mixture.component_log_prob(samples).argmax(-1))
    occupancy = np.bincount(component, minlength=len(weights)) / len(samples)
    return {
        "fd": frechet_distance_of(samples, reference),
        "sample_logp": float(np.mean(mixture.log_prob(samples))),
        "data_logp": float(np.mean(mixture.log_prob(np.asarray(reference, np.float32)))),
        "mode_error": float(np.max(np.abs(occupancy - weights / weights.sum()))),
    }
