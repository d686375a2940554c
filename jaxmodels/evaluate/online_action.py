"""Per-frame metrics of online action detection: THUMOS'14 mAP and TVSeries mcAP.

Both take ``scores`` and (one-hot or multi-hot) ``targets`` of shape N x C holding every frame of
every video concatenated, the scores used as given (the models output softmax probabilities).

* :func:`per_frame_map` follows the per-frame THUMOS'14 protocol of the TRN code base (after Shou
  et al., CVPR 2017): frames whose target is the ambiguous class are dropped, average precision is
  computed per action class, and the background (and ambiguous) class is left out of the mean.
  Classes without a positive frame are skipped (their AP is undefined).
* :func:`calibrated_map` is the mean calibrated average precision (mcAP) of De Geest et al.
  (ECCV 2016, Eq. 2-3): precision with true positives weighted by w = #negatives / #positives, so
  the score no longer depends on the share of positive frames.

Average precision follows scikit-learn's ``average_precision_score`` (step-wise, non-interpolated,
with tied scores forming one threshold), so results match the TRN code base, which calls it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["average_precision", "calibrated_average_precision", "per_frame_map", "calibrated_map"]


def _ranked_counts(labels_B: np.ndarray, scores_B: np.ndarray):
    """Returns cumulative (tp, fp) at each distinct score threshold, highest score first."""
    order = np.argsort(-scores_B, kind="mergesort")
    scores_sorted = scores_B[order]
    labels_sorted = labels_B[order].astype(np.float64)
    # The last index of each run of tied scores closes one threshold.
    last = np.r_[np.flatnonzero(np.diff(scores_sorted)), labels_sorted.size - 1]
    tp = np.cumsum(labels_sorted)[last]
    fp = (last + 1) - tp
    return tp, fp


def average_precision(labels_B: np.ndarray, scores_B: np.ndarray) -> float:
    """AP = sum_n (R_n - R_{n-1}) P_n over score thresholds (scikit-learn's definition)."""
    labels_B = np.asarray(labels_B).astype(bool)
    positives = labels_B.sum()
    if positives == 0:
        return float("nan")
    tp, fp = _ranked_counts(labels_B, np.asarray(scores_B, np.float64))
    precision = tp / (tp + fp)
    delta_recall = np.diff(np.r_[0.0, tp]) / positives
    return float(np.sum(delta_recall * precision))


def calibrated_average_precision(labels_B: np.ndarray, scores_B: np.ndarray) -> float:
    """cAP = sum_k cPrec(k) I(k) / P, cPrec = w TP / (w TP + FP), w = #neg/#pos (De Geest 2016)."""
    labels_B = np.asarray(labels_B).astype(bool)
    positives = labels_B.sum()
    if positives == 0:
        return float("nan")
    w = (labels_B.size - positives) / positives
    tp, fp = _ranked_counts(labels_B, np.asarray(scores_B, np.float64))
    calibrated_precision = w * tp / (w * tp + fp)
    delta_recall = np.diff(np.r_[0.0, tp]) / positives
    return float(np.sum(delta_recall * calibrated_precision))


def _per_class(metric, scores, targets, background, ambiguous) -> dict[int, float]:
    """Applies ``metric`` to each action class after dropping ambiguous frames."""
    scores = np.asarray(scores, np.float64)
    targets = np.asarray(targets)
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(
            f"scores {scores.shape} and targets {targets.shape} must both be N x C "
            "(frames x classes)"
        )
    num_classes = scores.shape[1]
    for name, index in (("background", background), ("ambiguous", ambiguous)):
        if index is not None and not 0 <= index < num_classes:
            raise ValueError(f"{name}={index} is not a class index of C={num_classes} classes")
    if ambiguous is not None:
        keep = targets[:, ambiguous] != 1
        scores, targets = scores[keep], targets[keep]
    result = {}
    for c in range(num_classes):
        if c in (background, ambiguous):
            continue
        labels = targets[:, c] == 1
        if labels.any():  # classes without positives have no AP and are skipped
            result[c] = metric(labels, scores[:, c])
    return result


def per_frame_map(
    scores, targets, *, background: int | None = 0, ambiguous: int | None = 21, per_class=False
):
    """THUMOS'14 per-frame mAP (TRN code base): ambiguous frames dropped, background excluded.

    Returns the mean AP over action classes with at least one positive frame, or with
    ``per_class=True`` a tuple ``(mAP, {class_index: AP})``.
    """
    aps = _per_class(average_precision, scores, targets, background, ambiguous)
    value = float(np.mean(list(aps.values()))) if aps else float("nan")
    return (value, aps) if per_class else value


def calibrated_map(
    scores, targets, *, background: int | None = 0, ambiguous: int | None = None, per_class=False
):
    """TVSeries mean calibrated AP (mcAP, De Geest et al. 2016) over action classes.

    Returns the mean cAP over action classes with at least one positive frame, or with
    ``per_class=True`` a tuple ``(mcAP, {class_index: cAP})``.
    """
    caps = _per_class(calibrated_average_precision, scores, targets, background, ambiguous)
    value = float(np.mean(list(caps.values()))) if caps else float("nan")
    return (value, caps) if per_class else value


def future_maps(future_probs, targets, *, offset: int = 0, background=0, ambiguous=None):
    """TRN anticipation mAP per decoder step j: scores for frame t + offset + j vs its target.

    ``future_probs`` and ``targets`` are per-video lists (``probs_LxTxC`` and ``y_LxC``, T
    decoder steps); targets past a video's end repeat its last frame, as in the TRN evaluation.
    Returns T mAP values.
    """
    num_steps = future_probs[0].shape[1]
    maps = []
    for j in range(num_steps):
        scores, shifted = [], []
        for probs_LxTxC, y_LxC in zip(future_probs, targets, strict=True):
            frames = np.minimum(np.arange(len(y_LxC)) + offset + j, len(y_LxC) - 1)
            scores.append(probs_LxTxC[:, j])
            shifted.append(y_LxC[frames])
        maps.append(
            per_frame_map(
                np.concatenate(scores),
                np.concatenate(shifted),
                background=background,
                ambiguous=ambiguous,
            )
        )
    return maps
