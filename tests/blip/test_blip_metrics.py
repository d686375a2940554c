"""BLEU-4 / CIDEr-D against published and hand-computed values; ITM re-ranking of the top k."""

import math

import numpy as np
import pytest

from jaxmodels.evaluate import captioning
from jaxmodels.evaluate.retrieval import recall_from_scores, rerank_top_k


def test_modified_precision_papineni_examples():
    # Papineni et al. 2002, Sec. 2.1, Example 2: modified unigram precision 2/7
    refs = ["The cat is on the mat.", "There is a cat on the mat."]
    assert captioning.modified_precision("the the the the the the the", refs, 1) == (2, 7)
    # Example 1, Candidate 1: 17/18 unigrams, 10/17 bigrams (after tokenising the period off)
    refs = [
        "It is a guide to action that ensures that the military will forever heed Party commands",
        "It is the guiding principle which guarantees the military forces always being under "
        "the command of the Party",
        "It is the practical guide for the army always to heed the directions of the party",
    ]
    cand = (
        "It is a guide to action which ensures that the military always obeys the commands of "
        "the party"
    )
    assert captioning.modified_precision(cand, refs, 1) == (17, 18)
    assert captioning.modified_precision(cand, refs, 2) == (10, 17)


def test_words_ignore_case_accents_and_punctuation():
    """A decoded caption ("a dog ' s bowl .") scores as its reference ("A dog's bowl.") does."""
    assert captioning.bleu(["a dog ' s naive bowl ."], [["A dog's naïve bowl."]]) == 1.0


def test_bleu4_by_hand():
    # p1..p4 = 4/5, 3/4, 2/3, 1/2 and no brevity penalty: BLEU = (1/5) ** (1/4)
    got = captioning.bleu(["a b c d e"], [["a b c d f"]])
    assert got == pytest.approx(0.2**0.25)
    assert captioning.bleu(["a b c d"], [["a b c d"]]) == pytest.approx(1.0)
    # shorter candidate: brevity penalty exp(1 - r/c) with r = 6, c = 4, all p_n = 1
    got = captioning.bleu(["a b c d"], [["a b c d e f"]])
    assert got == pytest.approx(math.exp(1 - 6 / 4))
    assert captioning.bleu(["x y z w"], [["a b c d"]]) == 0.0


def test_cider_d_by_hand():
    # Two images with disjoint references: every n-gram has idf log(2). A candidate equal to its
    # reference has cosine 1 for n = 1, 2 and no 3-, 4-grams (scored 0): 10 * (1 + 1) / 4 = 5.
    refs = [["a b"], ["c d"]]
    assert captioning.cider_d(["a b", "c d"], refs) == pytest.approx(5.0)
    assert captioning.cider_d(["c d", "a b"], refs) == pytest.approx(0.0)
    # "s" is in every image's references, so its idf is 0: the candidate "x" matches the
    # weighted unigrams of "x s" exactly (cosine 1), has no bigram, and a length penalty
    # exp(-(1 - 2)^2 / (2 * 6^2)) = exp(-1/72)
    refs = [["x s"], ["y s"]]
    got = captioning.cider_d(["x", "y s"], refs)
    first = 10 * 1.0 * math.exp(-1 / 72) / 4
    second = 10 * (1 + 1) / 4
    assert got == pytest.approx((first + second) / 2)


def test_most_frequent_caption():
    assert captioning.most_frequent_caption(["a", "b", "b", "c"]) == "b"


def test_itm_rerank_fixes_itc_mistakes_within_the_top_k():
    sims = np.asarray([[0.9, 0.8, 0.1], [0.7, 0.6, 0.2], [0.1, 0.2, 0.3]], np.float32)
    itc = recall_from_scores(sims)
    assert itc["i2t_recall@1"] == pytest.approx(2 / 3)  # image 1 ranks text 0 first

    def itm(img, txt):  # a perfect matcher: +10 on the true pair
        return np.where(img == txt, 10.0, 0.0)

    i2t, t2i = rerank_top_k(sims, itm, k=2)
    assert recall_from_scores(i2t)["i2t_recall@1"] == 1.0
    assert recall_from_scores(t2i)["t2i_recall@1"] == 1.0
    assert np.isinf(i2t[0, 2]) and i2t[0, 2] < 0  # outside the top k
    i2t1, _ = rerank_top_k(sims, itm, k=1)  # with k = 1 re-ranking cannot help
    assert recall_from_scores(i2t1)["i2t_recall@1"] == itc["i2t_recall@1"]
