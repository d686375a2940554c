"""Two towers with projection heads and the loss's learnable temperature and bias.

A ViT (:mod:`jaxmodels.layers.vit`) and a text transformer (:mod:`jaxmodels.layers.text_encoder`),
each followed by a linear projection to ``embed_dim`` and L2 normalisation (CLIP, Radford et
al., 2021, Fig. 3: ``I_e``, ``T_e``), plus the scalars of the loss: ``t_prime`` (t = exp(t'))
and, for SigLIP (Zhai et al., 2023, Alg. 1), the bias ``b``. Images arrive as uint8 and are
normalised per channel, ``(x / 255 - image_mean) / image_std`` (the family's default maps them
to [-1, 1]; an imported checkpoint keeps its own statistics). ``logits`` gives the pairwise
logits ``t zimg ztxtᵀ + b`` the losses are computed from (HF's ``logits_per_image``).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.data.tokenizers import ByteTokenizer, make_tokenizer
from jaxmodels.layers.text_encoder import TextTransformer
from jaxmodels.layers.vit import ViT, decode_preset, patch_grid
from jaxmodels.losses.contrastive import clip_temperature

Dtype = Any


def l2_normalize(x, eps=1e-6):
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


def projection_head(embed_dim, dtype, param_dtype, name, use_bias=False):
    """The linear map (bias-free by default) from a tower's width to the embedding width."""
    init = nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", None))
    return nn.Dense(
        embed_dim,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=init,
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
        name=name,
    )


class TwoTowers(nn.Module):
    """Image and text towers with projection heads, plus the learnable t_prime and bias b."""

    image: dict
    text: dict
    embed_dim: int
    t_prime_init: float
    b_init: float | None  # None: no bias (CLIP)
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)  # per channel, of pixels scaled to [0, 1]
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_projection: bool = True  # False: the image tower's pooled features are the embedding
    text_projection_bias: bool = False  # a bias in the text projection (SigLIP's text head)

    def setup(self):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.img = ViT(**self.image, **kw, name="img")
        self.txt = TextTransformer(**self.text, **kw, name="txt")
        if self.image_projection:
            self.img_head = projection_head(self.embed_dim, **kw, name="img_head")
        self.txt_head = projection_head(
            self.embed_dim, **kw, name="txt_head", use_bias=self.text_projection_bias
        )
        const = lambda v: nn.with_logical_partitioning(nn.initializers.constant(v), ())
        self.t_prime = self.param("t_prime", const(self.t_prime_init), (), jnp.float32)
        if self.b_init is not None:
            self.b = self.param("b", const(self.b_init), (), jnp.float32)

    def encode_image(self, images_BxHxWxC):
        """uint8 images -> L2-normalised embeddings (B, embed_dim)."""
        std = 255.0 * np.asarray(self.image_std, np.float32)
        shift = np.asarray(self.image_mean, np.float32) / np.asarray(self.image_std, np.float32)
        x = images_BxHxWxC.astype(jnp.float32) / std - shift
        h = self.img(x)
        return l2_normalize(self.img_head(h) if self.image_projection else h)

    def encode_text(self, tokens_BxL, lengths_B=None):
        """Token ids and their lengths (or a (B, L) attention mask; None: no padding) ->
        L2-normalised (B, embed_dim)."""
        return l2_normalize(self.txt_head(self.txt(tokens_BxL, lengths_B)))

    def bias(self):
        """The logit bias b (0 without one: CLIP)."""
        return self.b if self.b_init is not None else jnp.zeros((), jnp.float32)

    def logits(self, images_BxHxWxC, tokens_MxL, lengths_M=None):
        """Image-by-text logits (B, M): ``t zimg ztxtᵀ + b`` with the losses' t (CLIP's clipped
        at 100, :func:`~jaxmodels.losses.contrastive.clip_temperature`; SigLIP's exp(t'))."""
        zimg_BxE = self.encode_image(images_BxHxWxC)
        ztxt_MxE = self.encode_text(tokens_MxL, lengths_M)
        t = clip_temperature(self.t_prime) if self.b_init is None else jnp.exp(self.t_prime)
        return t * zimg_BxE @ ztxt_MxE.T + self.bias()

    def __call__(self, images, tokens, lengths=None):
        """Returns ``(zimg, ztxt, t_prime, b)``, the arguments of the contrastive losses."""
        zimg, ztxt = self.encode_image(images), self.encode_text(tokens, lengths)
        return zimg, ztxt, self.t_prime, self.bias()


def text_vocab_size(config, tokenizer) -> int:
    """Rows of the text embedding: ``model.text.vocab_size``, 0 meaning the tokenizer's size; a
    table too small for the tokenizer's ids is an error naming both."""
    n = config.model.text.vocab_size
    if n == 0:
        return tokenizer.vocab_size
    if n < tokenizer.vocab_size:
        hint = ""
        if tokenizer.is_bytes and n == OLD_BYTE_VOCAB:
            hint = " (a checkpoint written with 257 byte ids converts with byte_vocab_257_to_259)"
        raise ValueError(
            f"config.model.text.vocab_size={n} < the {tokenizer.vocab_size} ids of the tokenizer "
            f"config.data.tokenizer={config.data.get('tokenizer', 'byte')!r}; set 0 to use the "
            f"tokenizer's size{hint}"
        )
    return n


def tower_kwargs(config, tokenizer=None) -> tuple[dict, dict]:
    """``config.model.image``/``text`` -> keyword arguments of ViT / TextTransformer; the text
    vocabulary follows ``tokenizer`` (default: the one ``config.data.tokenizer`` names), and the
    image size must be tiled by the patches (:func:`~jaxmodels.layers.vit.patch_grid`)."""
    m = config.model
    image = dict(m.image)
    preset = image.pop("preset", "")
    if preset:
        image.update(decode_preset(preset))
    patch_grid(config.data.image_size, image["patch_size"])
    text = dict(m.text)
    text["vocab_size"] = text_vocab_size(config, tokenizer or make_tokenizer(config.data))
    for tower in (image, text):
        tower.update(
            attention_impl=m.attention_impl, remat_policy=m.remat_policy, scan_layers=m.scan_layers
        )
    return image, text


def bias_init(b_init, batch_size: int) -> float:
    """SigLIP's initial logit bias: a number, or ``"auto"`` for ``-log(n - 1)`` at batch n.

    With near-orthogonal embeddings at initialisation every logit is about b, so
    ``sigmoid(-log(n - 1)) = 1/n`` predicts the share of positives among the n² pairs. SigLIP
    (Zhai et al., 2023, Sec. 3.2) uses b = -10, about -log(32k) for its 32k batch; at a small
    batch that starts the negatives saturated.
    """
    if b_init == "auto":
        if batch_size < 2:
            raise ValueError("model.b_init='auto' needs train.batch_size >= 2")
        return -math.log(batch_size - 1)
    if isinstance(b_init, str):
        raise ValueError(f"model.b_init={b_init!r}: a number or 'auto'")
    return float(b_init)


def make_model(config, tokenizer=None) -> TwoTowers:
    """The towers of ``config.model`` for ``tokenizer`` (default: ``config.data.tokenizer``)."""
    m = config.model
    image, text = tower_kwargs(config, tokenizer)
    b_init = bias_init(m.b_init, config.train.batch_size) if m.variant == "siglip" else None
    return TwoTowers(
        image,
        text,
        m.embed_dim,
        m.t_prime_init,
        b_init,
        dtype=jnp.dtype(config.train.compute_dtype),
    )


# ----------------------------------------------------------------------------------------------
# Checkpoints written before the shared byte tokenizer
# ----------------------------------------------------------------------------------------------

OLD_BYTE_VOCAB = 257  # ids were byte + 1, with 0 as padding


def byte_vocab_257_to_259(tree):
    """Converts a TwoTowers tree whose text embedding used ids byte + 1 (0 = padding, 257 rows)
    to :class:`ByteTokenizer` ids (byte b -> b, PAD 256, BOS 257, EOS 258; 259 rows).

    New row b (b < 256) is old row b + 1; new PAD is old row 0 (padding is masked, so its row
    never reaches the output); BOS and EOS, which this family never feeds, are zero. Every
    other leaf is returned unchanged. Works on params and on any tree that mirrors them
    (Adam's ``mu``/``nu``).
    """
    table = np.asarray(tree["txt"]["token_embedding"]["embedding"])
    if table.shape[0] != OLD_BYTE_VOCAB:
        raise ValueError(f"text embedding has {table.shape[0]} rows, not {OLD_BYTE_VOCAB}")
    extra = ByteTokenizer.vocab_size - ByteTokenizer.pad_id - 1  # BOS, EOS
    new = np.concatenate([table[1:], table[:1], np.zeros((extra, table.shape[1]), table.dtype)])
    txt = {**tree["txt"], "token_embedding": {"embedding": new}}
    return {**tree, "txt": txt}
