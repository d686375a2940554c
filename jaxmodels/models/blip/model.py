"""BLIP's multimodal mixture of encoder-decoder (Li et al., ICML 2022, Sec. 3.1, Fig. 2).

An image tower (the project's ViT, all tokens with the class token first) and ONE BERT-style
text transformer used in three modes:

- ``text``: unimodal text encoder, ``[CLS]`` first, bidirectional self-attention, no
  cross-attention; its ``[CLS]`` feature feeds ITC (Sec. 3.2, eq. of L_itc).
- ``encoder``: image-grounded text encoder, ``[ENC]`` first, a cross-attention sub-layer into
  the image tokens in every block; its ``[ENC]`` feature feeds the ITM head (L_itm).
- ``decoder``: image-grounded text decoder, ``[DEC]`` (BOS) first, causal self-attention; it
  shares every weight with the encoder except the self-attention layers (Sec. 3.1: "the text
  encoder and decoder share all parameters except for the SA layers"), so its blocks use the
  shared :class:`~jaxmodels.layers.transformer.TransformerBlock` with
  ``self_attention_name="causal_attention"`` under the same parameter path.

Blocks are BERT's post-norm layers (LayerNorm eps 1e-12, exact GELU, biases); the LM head is
BERT's transform (dense, GELU, LayerNorm) with output weights tied to the word embeddings.
Images are NHWC floats (the task feeds uint8 scaled to [-1, 1]).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.layers.attention import AttentionInputs, right_padding_lengths
from jaxmodels.layers.mlp import ACTIVATIONS, dense
from jaxmodels.layers.norms import LayerNorm
from jaxmodels.layers.positions import NOPE
from jaxmodels.layers.transformer import BlockConfig, TransformerStack
from jaxmodels.layers.vit import ViT

Dtype = Any
MODES = ("text", "encoder", "decoder")


def _l2_normalize(x, eps=1e-12):
    x = x.astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


class BertText(nn.Module):
    """The BLIP text transformer; ``mode`` picks one of :data:`MODES` (same parameters)."""

    vocab_size: int
    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    max_len: int
    norm_eps: float = 1e-12  # BERT's LayerNorm epsilon
    activation: str = "gelu"  # BERT's exact GELU
    attention_impl: str = "auto"
    decode: bool = False  # KV cache for the decoder's causal self-attention
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _block(self, mode: str, cross: bool) -> BlockConfig:
        return BlockConfig(
            d_model=self.width,
            num_heads=self.num_heads,
            d_ff=self.mlp_dim,
            activation=self.activation,
            norm="layernorm",
            norm_eps=self.norm_eps,
            norm_position="post",
            use_bias=True,
            causal=mode == "decoder",
            position=NOPE,
            attention_impl=self.attention_impl,
            cross_attention=cross,
            self_attention_name="causal_attention" if mode == "decoder" else "attention",
        )

    def _embed(self, ids_BxL):
        """Word + absolute position embeddings, then LayerNorm (BERT); positions follow a cache."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        init = nn.with_logical_partitioning(nn.initializers.normal(0.02), ("vocab", "embed"))
        embed = nn.Embed(self.vocab_size, self.width, embedding_init=init, name="word", **kw)
        L = ids_BxL.shape[1]
        offset = 0
        if self.decode:
            caching = self.has_variable("cache", "position")  # False while init builds it
            index = self.variable("cache", "position", lambda: jnp.array(0, jnp.int32))
            if caching:
                offset = index.value
                index.value = offset + L
        pos_init = nn.with_logical_partitioning(nn.initializers.normal(0.02), ("length", "embed"))
        pos = self.param("position", pos_init, (self.max_len, self.width), self.param_dtype)
        pos_LxE = jax.lax.dynamic_slice_in_dim(pos, offset, L).astype(self.dtype)
        x = embed(ids_BxL) + pos_LxE[None]
        x = LayerNorm(self.norm_eps, name="embed_norm", **kw)(x)
        return nn.with_logical_constraint(x, ("batch", "length", "embed")), embed

    def _lm_head(self, h_BxLxE, embed):
        """BERT's MLM/LM head: dense + GELU + LayerNorm, logits by the tied word embeddings."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        init = nn.initializers.xavier_uniform()
        h = dense(
            self.width, ("embed", "mlp"), use_bias=True, kernel_init=init, name="lm_dense", **kw
        )(h_BxLxE)
        h = LayerNorm(self.norm_eps, name="lm_norm", **kw)(ACTIVATIONS[self.activation](h))
        b_init = nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",))
        bias = self.param("lm_bias", b_init, (self.vocab_size,), self.param_dtype)
        return embed.attend(h).astype(jnp.float32) + bias

    @nn.compact
    def __call__(self, ids_BxL, mask_BxL=None, image_BxSxE=None, *, mode: str):
        """Returns hidden states ``(B, L, width)`` (text/encoder) or LM logits (decoder).

        ``mask_BxL`` (1 = token) is right padding, as the tokenizer pads; self-attention takes it
        as per-row lengths (cuDNN's padded attention). Cached decoding reads the image tokens at
        the prefill (the first call after ``init``), which caches their cross-attention
        keys/values; later calls pass ``image_BxSxE=None``.
        """
        if mode not in MODES:
            raise ValueError(f"BLIP text mode {mode!r}: use one of {MODES}")
        cached = self.decode and mode == "decoder" and self.has_variable("cache", "position")
        if mode != "text" and image_BxSxE is None and not cached:
            raise ValueError(f"BLIP text mode {mode!r} needs the image tokens")
        x, embed = self._embed(ids_BxL)
        stack = TransformerStack(
            self._block(mode, cross=mode != "text"),
            self.depth,
            decode=self.decode and mode == "decoder",
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="layers",
        )
        lengths_B = None if mask_BxL is None else right_padding_lengths(mask_BxL)
        h = stack(x, AttentionInputs(kv_lengths_B=lengths_B, encoded_BxSxE=image_BxSxE))
        return self._lm_head(h, embed) if mode == "decoder" else h


class BLIP(nn.Module):
    """ViT + :class:`BertText` with ITC projections and the ITM head (Fig. 2).

    ``encoder``/``decoder`` say which text modes exist (an HF retrieval checkpoint has no
    decoder, a captioning one no encoder-only parts); training builds both.
    """

    image: dict  # ViT keyword arguments (pool is forced to "none")
    text: dict  # BertText keyword arguments
    embed_dim: int = 256  # ITC feature width (BLIP: 256)
    t_init: float = 0.07  # ITC temperature tau (BLIP/ALBEF init 0.07)
    encoder: bool = True
    decoder: bool = True
    decode: bool = False
    # per-channel statistics of pixels in [0, 1] that images are normalised with before the
    # ViT (blip.data.pixels): 0.5 / 0.5 maps uint8 to [-1, 1]; an import, its preprocessing's
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.visual = ViT(**{**self.image, "pool": "none"}, **kw, name="visual")
        self.text_model = BertText(**self.text, decode=self.decode, **kw, name="text")
        init = nn.initializers.xavier_uniform()
        if self.encoder:
            proj = dict(use_bias=True, kernel_init=init, **kw)
            self.vision_proj = dense(self.embed_dim, ("embed", None), name="vision_proj", **proj)
            self.text_proj = dense(self.embed_dim, ("embed", None), name="text_proj", **proj)
            self.itm_head = dense(2, ("embed", None), name="itm_head", **proj)
            t_init = nn.with_logical_partitioning(nn.initializers.constant(self.t_init), ())
            self.temp = self.param("temp", t_init, (), jnp.float32)

    def image_tokens(self, images_BxHxWxC):
        """ViT tokens ``(B, 1 + patches, width)``, class token first (post-LayerNorm)."""
        return self.visual(images_BxHxWxC)

    def image_features(self, image_BxSxE):
        """ITC image feature: L2-normalised projection of the class token."""
        return _l2_normalize(self.vision_proj(image_BxSxE[:, 0]))

    def text_features(self, ids_BxL, mask_BxL):
        """ITC text feature: L2-normalised projection of the unimodal encoder's [CLS]."""
        h = self.text_model(ids_BxL, mask_BxL, mode="text")
        return _l2_normalize(self.text_proj(h[:, 0]))

    def itm_from_tokens(self, image_BxSxE, ids_BxL, mask_BxL):
        """ITM logits (B, 2) [no match, match] from the image-grounded encoder's first token."""
        h = self.text_model(ids_BxL, mask_BxL, image_BxSxE, mode="encoder")
        return self.itm_head(h[:, 0]).astype(jnp.float32)

    def decoder_logits(self, image_BxSxE, ids_BxL, mask_BxL=None):
        return self.text_model(ids_BxL, mask_BxL, image_BxSxE, mode="decoder")

    # ---- the documented entry points (images NHWC; ids used as given) ----

    def itc_similarity(self, images_BxHxWxC, ids_BxL, mask_BxL):
        """Cosine similarities (B_img, B_txt) of the ITC features (HF, use_itm_head=False)."""
        zimg = self.image_features(self.image_tokens(images_BxHxWxC))
        return zimg @ self.text_features(ids_BxL, mask_BxL).T

    def itm_logits(self, images_BxHxWxC, ids_BxL, mask_BxL):
        """ITM logits (B, 2) of the pairs (HF ``itm_score`` with use_itm_head=True)."""
        return self.itm_from_tokens(self.image_tokens(images_BxHxWxC), ids_BxL, mask_BxL)

    def caption_logits(self, images_BxHxWxC, ids_BxL, mask_BxL):
        """Decoder logits (B, L, vocab), position t predicting token t + 1 (HF ``logits``)."""
        return self.decoder_logits(self.image_tokens(images_BxHxWxC), ids_BxL, mask_BxL)

    def __call__(self, images_BxHxWxC, ids_BxL, mask_BxL):
        """Runs every mode this model has (used by ``init``)."""
        image = self.image_tokens(images_BxHxWxC)
        out = {}
        if self.encoder:
            out["zimg"] = self.image_features(image)
            out["ztxt"] = self.text_features(ids_BxL, mask_BxL)
            out["itm"] = self.itm_from_tokens(image, ids_BxL, mask_BxL)
        if self.decoder:
            out["logits"] = self.decoder_logits(image, ids_BxL, mask_BxL)
        return out
