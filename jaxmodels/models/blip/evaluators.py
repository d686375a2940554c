"""BLIP's evaluators, chosen by name in ``config.evals`` (:func:`jaxmodels.evaluate.select`).

- ``retrieval``: held-out images against their distinct captions, recall@1/5/10 both ways by
  ITC (``itc_i2t_recall@K``, ``itc_t2i_recall@K``) and after ITM re-scores each query's top
  ``data.rerank_k`` (``itm_...``; BLIP Sec. 5.1).
- ``captioning``: BLEU-4 and CIDEr-D of beam-3 captions (``bleu4``, ``cider``) and of the
  most-frequent-caption baseline (``baseline_bleu4``, ``baseline_cider``).
- ``zero_shot``: top-1/top-5 by ITC features on the labelled folder ``config.zero_shot.dir``
  (:mod:`jaxmodels.evaluate.zero_shot_folder`; ``zeroshot_<name>_top1``), the class prompts
  written as ``[CLS] prompt [EOS]`` rows like the retrieval captions.

:class:`Scorer` (ITC features and ITM scores over host arrays) also serves CapFilt.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxmodels.evaluate import captioning, zero_shot_folder
from jaxmodels.evaluate.chunked import chunked_map
from jaxmodels.evaluate.retrieval import CaptionIndex, rerank_top_k
from jaxmodels.models.blip import data
from jaxmodels.models.blip.model import BLIP
from jaxmodels.models.blip.tokens import TokenLayout


class Scorer:
    """Jitted ITC features and ITM match scores of a BLIP model over host arrays, in chunks of
    ``batch_size`` (:func:`~jaxmodels.evaluate.chunked.chunked_map`; outputs replicated on
    ``mesh`` when one is given); ``layout`` gives the padding and [ENC] ids."""

    def __init__(self, model: BLIP, layout: TokenLayout, rules, batch_size: int, mesh=None):
        self.model, self.layout, self.rules = model, layout, tuple(rules)
        self._images = chunked_map(self._image_fn, batch_size, mesh=mesh)
        self._features = chunked_map(
            lambda params, images: self._image_fn(params, images)[1], batch_size, mesh=mesh
        )
        self._texts = chunked_map(self._text_fn, batch_size, mesh=mesh)
        self._itm = chunked_map(self._itm_fn, batch_size, mesh=mesh)

    def _apply(self, params, *args, method):
        with nn.logical_axis_rules(self.rules):
            return self.model.apply({"params": params}, *args, method=method)

    def _image_fn(self, params, images):
        x = data.pixels(images, self.model.image_mean, self.model.image_std)
        tokens = self._apply(params, x, method=BLIP.image_tokens)
        return tokens, self._apply(params, tokens, method=BLIP.image_features)

    def _text_fn(self, params, ids):
        return self._apply(params, ids, ids != self.layout.pad_id, method=BLIP.text_features)

    def _itm_fn(self, params, image_tokens, ids):
        enc = ids.at[:, 0].set(self.layout.enc_id)
        mask = ids != self.layout.pad_id
        logits = self._apply(params, image_tokens, enc, mask, method=BLIP.itm_from_tokens)
        return logits[:, 1], jax.nn.softmax(logits)[:, 1]

    def images(self, params, images):
        """Image tokens and ITC image features."""
        return self._images(params, images)

    def image_features(self, params, images):
        """ITC image features alone (the image tokens are not kept)."""
        return self._features(params, images)

    def texts(self, params, ids):
        """ITC text features of ``[CLS] caption [EOS]`` id rows."""
        return self._texts(params, ids)

    def itm(self, params, image_tokens, ids, prob: bool = False):
        """ITM match logit (or probability) of each (image tokens, text ids) pair."""
        return self._itm(params, image_tokens, ids)[int(prob)]


def retrieval_metrics(scorer: Scorer, params, images, captions, k: int) -> dict:
    """Recall@1/5/10 both ways by ITC, and after re-ranking each query's top k by ITM."""
    index = CaptionIndex.of(captions)
    ids = scorer.layout.encode(index.captions)["text"]
    tokens, zimg = scorer.images(params, images)
    sims = zimg @ scorer.texts(params, ids).T
    out = {f"itc_{key}": v for key, v in index.recall(sims).items()}
    i2t, t2i = rerank_top_k(sims, lambda i, t: scorer.itm(params, tokens[i], ids[t]), k)
    for name, scores in (("i2t", i2t), ("t2i", t2i)):
        out.update(
            {f"itm_{key}": v for key, v in index.recall(scores).items() if key.startswith(name)}
        )
    return out


def caption_metrics(captions, references, train_captions) -> dict:
    """BLEU-4 and CIDEr-D of ``captions`` and of the most-frequent-caption baseline."""
    refs = [[r] for r in references]
    base = [captioning.most_frequent_caption(train_captions)] * len(references)
    return {
        "bleu4": captioning.bleu(captions, refs),
        "cider": captioning.cider_d(captions, refs),
        "baseline_bleu4": captioning.bleu(base, refs),
        "baseline_cider": captioning.cider_d(base, refs),
    }


def evaluators(config, mesh, model: BLIP, layout, captioner, held, train_captions) -> dict:
    """``{name: builder}`` of the evaluators above: ``zero_shot``, and with the ``held``
    (images, captions) split (None: none held out) ``retrieval`` and ``captioning``."""
    d = config.data

    def scorer():
        return Scorer(model, layout, config.mesh.rules, d.eval_batch_size, mesh)

    def zero_shot():
        s = scorer()
        return zero_shot_folder.evaluator(
            config.get("zero_shot"),
            s.image_features,
            lambda params, texts: s.texts(params, layout.encode(texts)["text"]),
            d.image_size,
            check_texts=layout.encode,  # a closed vocabulary refuses an unknown word by name
        )

    if not held:
        return {"zero_shot": zero_shot}
    images, captions = held[0][: d.retrieval_size], held[1][: d.retrieval_size]

    def retrieval():
        s = scorer()
        return lambda params, rng: retrieval_metrics(s, params, images, captions, d.rerank_k)

    def caption(params, rng):
        n, bs = d.caption_eval_size, d.eval_batch_size
        gen = []
        for i in range(0, n, bs):
            gen += captioner(params, held[0][i : min(n, i + bs)], rng, "beam")
        return caption_metrics(gen, held[1][:n], train_captions)

    return {"retrieval": retrieval, "captioning": lambda: caption, "zero_shot": zero_shot}
