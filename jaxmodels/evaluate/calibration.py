"""Calibration of a classifier's probabilities (Guo et al., ICML 2017, "On Calibration of Modern
Neural Networks", Sec. 2).

A prediction's confidence is its largest class probability. The expected calibration error
(ECE, eq. 3, after Naeini et al. 2015) groups predictions into ``M`` equal-width confidence bins
``((m-1)/M, m/M]`` and averages ``|accuracy - mean confidence|`` over the bins, weighted by
their share of predictions.
"""

from __future__ import annotations

import numpy as np


def expected_calibration_error(probs_BxC, labels_B, bins: int = 15) -> float:
    """``sum_m |B_m| / n * |acc(B_m) - conf(B_m)|`` over ``bins`` bins (Guo et al., eq. 3), for n
    predictions (the shape letter ``A`` counts the bins)."""
    probs_BxC, labels_B = np.asarray(probs_BxC, np.float64), np.asarray(labels_B)
    confidence_B = probs_BxC.max(-1)
    correct_B = probs_BxC.argmax(-1) == labels_B
    bin_B = np.clip(np.ceil(confidence_B * bins).astype(int) - 1, 0, bins - 1)
    count_A = np.bincount(bin_B, minlength=bins)
    gap_A = np.bincount(bin_B, correct_B - confidence_B, minlength=bins)  # sum of (acc - conf)
    return float(np.abs(gap_A).sum() / max(count_A.sum(), 1))


def calibration(probs_BxC, labels_B, bins: int = 15) -> dict[str, float]:
    """ECE, accuracy and mean confidence (above accuracy: over-confident)."""
    probs_BxC = np.asarray(probs_BxC, np.float64)
    return {
        "ece": expected_calibration_error(probs_BxC, labels_B, bins),
        "accuracy": float(np.mean(probs_BxC.argmax(-1) == np.asarray(labels_B))),
        "confidence": float(probs_BxC.max(-1).mean()),
    }
