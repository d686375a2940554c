"""CapFilt (Li et al., ICML 2022, Sec. 3.3, Fig. 3): caption, filter, bootstrap a dataset.

The captioner (the image-grounded decoder) writes one synthetic caption per image by nucleus
sampling (p = 0.9, Sec. 3.4: more diverse captions help); the filter (the image-grounded
encoder's ITM head) keeps an original or synthetic text when its match probability reaches
``threshold``. The kept pairs form the bootstrapped dataset.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class CapFiltResult:
    synthetic: list[str]  # one generated caption per image
    p_original: np.ndarray  # ITM match probability of each (image, original text)
    p_synthetic: np.ndarray  # ... of each (image, synthetic text)
    keep_original: np.ndarray  # bool per image
    keep_synthetic: np.ndarray  # bool per image

    def dataset(self, images: np.ndarray, originals) -> tuple[np.ndarray, list[str]]:
        """The bootstrapped pairs: kept originals, then kept synthetic captions."""
        texts = [t for t, k in zip(originals, self.keep_original, strict=True) if k]
        texts += [t for t, k in zip(self.synthetic, self.keep_synthetic, strict=True) if k]
        imgs = np.concatenate([images[self.keep_original], images[self.keep_synthetic]])
        return imgs, texts


def capfilt(captioner, scorer, params, images, captions, rng, *, threshold=0.5, batch=250):
    """Runs captioner + filter over ``images`` with their (noisy) ``captions``.

    ``captioner`` is a :class:`~jaxmodels.models.blip.sample.Captioner` and ``scorer`` a
    :class:`~jaxmodels.models.blip.evaluators.Scorer` of the same trained model.
    """
    import jax

    synthetic = []
    for i in range(0, len(images), batch):
        key = jax.random.fold_in(rng, i)
        synthetic += captioner(params, images[i : i + batch], key, "nucleus")
    layout = scorer.layout
    max_len = layout.fit_len(captions, synthetic)  # every caption whole
    tokens, _ = scorer.images(params, images)
    p_orig = scorer.itm(params, tokens, layout.encode(captions, max_len)["text"], prob=True)
    p_syn = scorer.itm(params, tokens, layout.encode(synthetic, max_len)["text"], prob=True)
    return CapFiltResult(synthetic, p_orig, p_syn, p_orig >= threshold, p_syn >= threshold)


def noise_report(result: CapFiltResult, corrupted: np.ndarray) -> dict[str, float]:
    """Share of corrupted original pairs removed and of clean ones kept by the filter."""
    keep = result.keep_original
    return {
        "corrupted_removed": float(np.mean(~keep[corrupted])) if corrupted.any() else 0.0,
        "clean_kept": float(np.mean(keep[~corrupted])),
        "synthetic_kept": float(np.mean(result.keep_synthetic)),
    }
