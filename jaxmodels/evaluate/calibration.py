"""Calibration of a classifier's probabilities (Guo et al., ICML 2017, "On Calibration of Modern
Neural Networks", Sec. 2).

A prediction's confidence is its largest class probability. The expected calibration error
(ECE, eq. 3, after Naeini et al. 2015) groups predictions into ``M`` equal-width confidence bins
``((m-1)/M, m/M]`` and averages ``|accuracy - mean confidence|`` over the bins, weighted by
their share of predictions.
"""

from __future__ import annotations

import numpy as np


def expected_calibration_error(probs_NxC, labels_N, bins: int = 15) -> float:
    """``sum_m |B_m| / N * |acc(B_m) - conf(B_m)|`` over ``bins`` bins (Guo et al., eq. 3)."""
    probs_NxC, labels_N = np.asarray(probs_NxC, np.float64), np.asarray(labels_N)
    confidence_N = probs_NxC.max(-1)
    correct_N = probs_NxC.argmax(-1) == labels_N
    bin_N = np.clip(np.ceil(confidence_N * bins).astype(int) - 1, 0, bins - 1)
    count_M = np.bincount(bin_N, minlength=bins)
    gap_M = np.bincount(bin_N, correct_N - confidence_N, minlength=bins)  # sum of (acc - conf)
    return float(np.abs(gap_M).sum() / max(count_M.sum(), 1))


def calibration(probs_NxC, labels_N, bins: int = 15) -> dict[str, float]:
    """ECE, accuracy and mean confidence (above accuracy: over-confident)."""
    probs_NxC = np.asarray(probs_NxC, np.float64)
    return {
        "ece": expected_calibration_error(probs_NxC, labels_N, bins),
        "accuracy": float(np.mean(probs_NxC.argmax(-1) == np.asarray(labels_N))),
        "confidence": float(probs_NxC.max(-1).mean()),
    }
