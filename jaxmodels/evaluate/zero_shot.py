"""Zero-shot classification with prompt templates (CLIP Sec. 3.1.4, prompt ensembling).

Each class name is written into every template ("a picture of a {}"), the text tower embeds the
prompts, the L2-normalised embeddings are averaged over templates and renormalised, and an
image is assigned the class whose embedding has the largest cosine similarity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def class_embeddings(
    embed_texts: Callable[[list[str]], np.ndarray],
    classnames: Sequence[str],
    templates: Sequence[str],
) -> np.ndarray:
    """(C, E) class embeddings: the renormalised mean of each class's prompt embeddings.

    ``A`` (a letter beyond the shape legend) counts the templates, one prompt per class and
    template.
    """
    prompts = [t.format(c) for c in classnames for t in templates]
    z_CAxE = np.asarray(embed_texts(prompts), np.float32)
    z_CxAxE = z_CAxE.reshape(len(classnames), len(templates), -1)
    z_CxAxE = z_CxAxE / np.linalg.norm(z_CxAxE, axis=-1, keepdims=True)
    mean_CxE = z_CxAxE.mean(axis=1)
    return mean_CxE / np.linalg.norm(mean_CxE, axis=-1, keepdims=True)


def zero_shot_accuracy(zimg_BxE, zcls_CxE, labels_B, ks=(1,)) -> dict[str, float]:
    """Top-K accuracy of nearest-class-embedding predictions: ``{top1: ..., top5: ...}``."""
    scores_BxC = np.asarray(zimg_BxE, np.float32) @ np.asarray(zcls_CxE, np.float32).T
    labels_B = np.asarray(labels_B)
    # the true class is in the top K when fewer than K classes score strictly higher
    rank_B = np.sum(scores_BxC > scores_BxC[np.arange(len(labels_B)), labels_B][:, None], axis=1)
    return {f"top{k}": float(np.mean(rank_B < k)) for k in ks}
