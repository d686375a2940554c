"""Captioning with the BLIP decoder: greedy, beam search and nucleus sampling from a prompt.

The decoder runs with a KV cache (``BLIP(decode=True)``): its causal self-attention appends
each token's keys/values, and its cross-attention projects the image tokens once, at the
prompt's pass (the shared decoders' ``prefill_fn``), repeated once per beam. Token choice is the
shared :mod:`jaxmodels.samplers.decode` (greedy/nucleus: ``generate``; beam: ``beam_search``).
Captions are generated after BLIP's prompt "a picture of " (Sec. 4.1), which is stripped.
"""

from __future__ import annotations

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.models.blip import data
from jaxmodels.models.blip.model import BLIP
from jaxmodels.models.blip.tokens import TokenLayout
from jaxmodels.samplers.decode import beam_search, generate

# method: (decoding options); BLIP Sec. 4.1/4.4: beam 3 for captioning, nucleus p = 0.9 CapFilt
METHODS = {
    "greedy": dict(temperature=0.0),
    "beam": dict(beam_size=3),
    "nucleus": dict(temperature=1.0, top_p=0.9),
}


class Captioner:
    """``captioner(params, images_uint8, rng, method) -> list of captions`` (jitted parts):
    continues ``layout``'s ``[DEC] prompt`` rows by up to a caption row's tokens, decoded by its
    tokenizer up to [SEP]."""

    def __init__(self, model: BLIP, layout: TokenLayout, rules=()):
        self.model, self.layout, self.rules = model, layout, tuple(rules)
        self.decoder = model.clone(decode=True)
        self.max_new_tokens = layout.max_len - 2  # the caption tokens a text row holds
        self._image_tokens = jax.jit(self._tokens)

    def _tokens(self, params, images):
        with nn.logical_axis_rules(self.rules):
            x = data.pixels(images, self.model.image_mean, self.model.image_std)
            return self.model.apply({"params": params}, x, method=BLIP.image_tokens)

    def _decoder_fn(self, prefill: bool):
        """``(params_and_image, cache, tokens) -> (logits, cache)`` for the shared decoders: the
        prefill reads the image tokens (caching their cross-attention keys/values), steps don't."""

        def apply_fn(params_and_image, cache, tokens_BxT):
            params, image = params_and_image
            with nn.logical_axis_rules(self.rules):
                logits, mut = self.decoder.apply(
                    {"params": params, "cache": cache},
                    image if prefill else None,
                    tokens_BxT,
                    None,
                    method=BLIP.decoder_logits,
                    mutable=["cache"],
                )
            return logits, mut["cache"]

        return apply_fn

    @functools.cached_property
    def decode_fns(self) -> dict:
        return dict(apply_fn=self._decoder_fn(False), prefill_fn=self._decoder_fn(True))

    def _cache(self, image_BxSxE, length: int):
        rows = image_BxSxE.shape[0]
        ids = jnp.zeros((rows, length), jnp.int32)
        shapes = jax.eval_shape(
            lambda: self.decoder.init(
                jax.random.key(0), image_BxSxE, ids, None, method=BLIP.decoder_logits
            )
        )["cache"]
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def __call__(self, params, images, rng, method: str = "beam") -> list[str]:
        if method not in METHODS:
            raise ValueError(f"caption method {method!r}: use one of {list(METHODS)}")
        opts = METHODS[method]
        image = self._image_tokens(params, images)
        prompt = jnp.asarray(self.layout.prompt(len(images)))
        length = prompt.shape[1] + self.max_new_tokens
        common = dict(max_new_tokens=self.max_new_tokens, eos_id=self.layout.eos_id)
        common["pad_id"] = self.layout.pad_id
        if method == "beam":
            image = jnp.repeat(image, opts["beam_size"], axis=0)  # one cache row per beam
        args = dict(params=(params, image), cache=self._cache(image, length), prompt_BxL=prompt)
        args.update(self.decode_fns, **opts, **common)
        tokens = beam_search(**args)[0] if method == "beam" else generate(**args, rng=rng)
        return [self.layout.decode(t) for t in np.asarray(tokens)]


def caption_grid(path: str, images: np.ndarray, captions, columns: int = 4) -> None:
    """Writes a PNG grid of images titled with their captions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, cap in zip(axes.ravel(), images, captions, strict=False):
        ax.imshow(img, interpolation="nearest")
        ax.set_title("".join(ch if ch.isprintable() else "?" for ch in cap), fontsize=8, wrap=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def make_sample(captioner: Captioner, images, references, n: int):
    """``jaxmodels sample``: a PNG grid of held-out images with beam-search captions."""

    def sample(params, rng, workdir):
        beam = captioner(params, images[:n], rng, "beam")
        nucleus = captioner(params, images[:n], rng, "nucleus")
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, "samples.png")
        caption_grid(path, images[:n], beam)
        lines = [
            f"ref: {r} | beam: {b} | nucleus: {s}"
            for r, b, s in zip(references[:n], beam, nucleus, strict=True)
        ]
        return "\n".join([f"wrote {path}", *lines])

    return sample
