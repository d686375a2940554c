"""Image <-> text retrieval recall@K (CLIP Sec. 3.1.5; the Flickr30k/COCO protocol).

A query counts as retrieved at K when one of its matching items is among the K most similar.
Matches are given by group ids: image i matches text j when ``img_ids[i] == txt_ids[j]`` (by
default the i-th image matches only the i-th text; :class:`CaptionIndex` gives those ids for
held-out (image, caption) pairs where several images share a caption string). Shapes: the
images are the queries ``Q`` and the texts the candidates ``M`` (i2t); t2i transposes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


def _recall(sims_QxM: np.ndarray, match_QxM: np.ndarray, ks) -> dict[int, float]:
    """Fraction of queries with a match ranked in the top K (ties ranked pessimistically)."""
    best_match_Q = np.where(match_QxM, sims_QxM, -np.inf).max(axis=1)
    # rank of the best match = number of non-matching items scoring at least as high
    rank_Q = np.sum(np.where(match_QxM, False, sims_QxM >= best_match_Q[:, None]), axis=1)
    return {k: float(np.mean(rank_Q < k)) for k in ks}


def recall_at_k(zimg_QxE, ztxt_MxE, img_ids=None, txt_ids=None, ks=(1, 5, 10)) -> dict:
    """Returns ``{i2t_recall@K, t2i_recall@K}`` for L2-normalised image/text embeddings."""
    zimg_QxE, ztxt_MxE = np.asarray(zimg_QxE, np.float32), np.asarray(ztxt_MxE, np.float32)
    return recall_from_scores(zimg_QxE @ ztxt_MxE.T, img_ids, txt_ids, ks)


def recall_from_scores(sims_QxM, img_ids=None, txt_ids=None, ks=(1, 5, 10)) -> dict:
    """:func:`recall_at_k` for any image x text score matrix (e.g. ITM re-ranked scores)."""
    sims_QxM = np.asarray(sims_QxM, np.float32)
    n, m = sims_QxM.shape
    img_ids = np.arange(n) if img_ids is None else np.asarray(img_ids)
    txt_ids = np.arange(m) if txt_ids is None else np.asarray(txt_ids)
    if img_ids.shape != (n,) or txt_ids.shape != (m,):
        raise ValueError(f"ids shapes {img_ids.shape}, {txt_ids.shape} != ({n},), ({m},)")
    match_QxM = img_ids[:, None] == txt_ids[None, :]
    if not match_QxM.any(axis=1).all() or not match_QxM.any(axis=0).all():
        raise ValueError("every image and every text needs at least one match")
    out = {f"i2t_recall@{k}": v for k, v in _recall(sims_QxM, match_QxM, ks).items()}
    out.update({f"t2i_recall@{k}": v for k, v in _recall(sims_QxM.T, match_QxM.T, ks).items()})
    return out


@dataclasses.dataclass(frozen=True)
class CaptionIndex:
    """Held-out (image, caption) pairs as a retrieval set: the images are the queries, the
    distinct caption strings the candidates, and every image matches its own caption (so images
    sharing a caption all match it, and that caption retrieves any of them)."""

    captions: list[str]  # the M distinct captions, sorted: the text candidates to embed
    image_ids: np.ndarray  # (Q,) int: each image's caption, an index into ``captions``

    @classmethod
    def of(cls, captions_Q: Sequence[str]) -> CaptionIndex:
        unique, ids = np.unique(np.asarray(captions_Q, dtype=str), return_inverse=True)
        return cls([str(c) for c in unique], ids.reshape(-1))

    def recall(self, sims_QxM, ks=(1, 5, 10)) -> dict:
        """``{i2t_recall@K, t2i_recall@K}`` of an image x distinct-caption score matrix."""
        return recall_from_scores(sims_QxM, self.image_ids, np.arange(len(self.captions)), ks)


def rerank_top_k(sims_QxM, pair_score_fn, k: int) -> tuple[np.ndarray, np.ndarray]:
    """BLIP's retrieval (Li et al., 2022, Sec. 5.1): rank by ITC, re-score the top k by ITM.

    ``pair_score_fn(img_idx_QJ, txt_idx_QJ) -> scores_QJ`` scores image-text pairs (e.g. the ITM
    match logit) for the ``J = min(k, M)`` kept candidates of each query (``J``: a letter
    beyond the shape legend). Returns the (Q, M) i2t and t2i score matrices: ``sim + pair
    score`` on each query's top-k candidates, ``-inf`` elsewhere (BLIP adds the ITC similarity
    likewise).
    """
    sims_QxM = np.asarray(sims_QxM, np.float32)
    n, m = sims_QxM.shape
    out = []
    for s_QxM, swap in ((sims_QxM, False), (sims_QxM.T, True)):
        kk = min(k, s_QxM.shape[1])
        top_QxJ = np.argsort(-s_QxM, axis=1, kind="stable")[:, :kk]
        q_idx = np.repeat(np.arange(len(s_QxM)), kk)
        c_idx = top_QxJ.reshape(-1)
        img, txt = (c_idx, q_idx) if swap else (q_idx, c_idx)
        scores = np.full(s_QxM.shape, -np.inf, np.float32)
        scores[q_idx, c_idx] = s_QxM[q_idx, c_idx] + np.asarray(pair_score_fn(img, txt))
        out.append(scores.T if swap else scores)
    return out[0], out[1]
