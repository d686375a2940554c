"""Caption metrics: corpus BLEU-4 (Papineni et al., 2002) and CIDEr-D (Vedantam et al., 2015).

Captions are compared as words: lower-cased, accents stripped, runs of letters and digits, so
punctuation counts for nothing (COCO's PTB tokenizer drops it too) and a reference "A dog's
bowl." matches the tokenizer-decoded "a dog ' s bowl ." of a generated caption. Both follow the
COCO caption evaluation conventions: BLEU's brevity penalty uses the reference length closest to
each candidate, summed over the corpus; CIDEr-D uses TF-IDF n-gram vectors (n = 1..4) with
document frequencies over the references of the evaluated set, clipped candidate counts, a
Gaussian length penalty (sigma = 6) and a factor 10.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence


def _tokens(text: str) -> list[str]:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return re.findall(r"\w+", "".join(c for c in decomposed if not unicodedata.combining(c)))


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def modified_precision(candidate: str, references: Sequence[str], n: int) -> tuple[int, int]:
    """Papineni et al. 2002, Sec. 2.1: (clipped n-gram matches, candidate n-grams)."""
    cand = ngrams(_tokens(candidate), n)
    max_ref = Counter()
    for ref in references:
        for g, c in ngrams(_tokens(ref), n).items():
            max_ref[g] = max(max_ref[g], c)
    return sum(min(c, max_ref[g]) for g, c in cand.items()), sum(cand.values())


def bleu(candidates: Sequence[str], references: Sequence[Sequence[str]], n_max: int = 4) -> float:
    """Corpus BLEU-n_max: ``BP * exp(mean_n log p_n)`` (Papineni et al. 2002, Sec. 2.3)."""
    matches, totals = [0] * n_max, [0] * n_max
    cand_len = ref_len = 0
    for cand, refs in zip(candidates, references, strict=True):
        for n in range(1, n_max + 1):
            m, t = modified_precision(cand, refs, n)
            matches[n - 1] += m
            totals[n - 1] += t
        c = len(_tokens(cand))
        cand_len += c
        ref_len += min((abs(len(_tokens(r)) - c), len(_tokens(r))) for r in refs)[1]
    if min(matches) == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(matches, totals, strict=True)) / n_max
    bp = 1.0 if cand_len > ref_len else math.exp(1 - ref_len / max(cand_len, 1))
    return bp * math.exp(log_p)


def _tfidf(counts: Counter, df: Counter, log_n: float) -> tuple[dict, float]:
    vec = {g: c * (log_n - math.log(max(1.0, df[g]))) for g, c in counts.items()}
    return vec, math.sqrt(sum(v * v for v in vec.values()))


def cider_d(
    candidates: Sequence[str],
    references: Sequence[Sequence[str]],
    n_max: int = 4,
    sigma: float = 6.0,
) -> float:
    """Corpus-mean CIDEr-D (Vedantam et al., 2015, eq. 1-5, with the COCO "-D" changes)."""
    refs_tok = [[_tokens(r) for r in refs] for refs in references]
    df = Counter()
    for refs in refs_tok:  # document frequency: in how many images' references a gram occurs
        df.update({g for r in refs for n in range(1, n_max + 1) for g in ngrams(r, n)})
    log_n = math.log(float(len(references)))
    scores = []
    for cand, refs in zip(candidates, refs_tok, strict=True):
        c_tok = _tokens(cand)
        total = 0.0
        for ref in refs:
            delta = len(c_tok) - len(ref)
            for n in range(1, n_max + 1):
                vc, nc = _tfidf(ngrams(c_tok, n), df, log_n)
                vr, nr = _tfidf(ngrams(ref, n), df, log_n)
                dot = sum(min(v, vr[g]) * vr[g] for g, v in vc.items() if g in vr)
                if nc and nr:
                    total += dot / (nc * nr) * math.exp(-(delta**2) / (2 * sigma**2)) / n_max
        scores.append(10.0 * total / len(refs))
    return sum(scores) / len(scores)


def most_frequent_caption(train_captions: Sequence[str]) -> str:
    """The baseline caption: the training caption seen most often."""
    return Counter(train_captions).most_common(1)[0][0]
