"""Text transformer tower for two-tower models (CLIP Sec. 2.4; SigLIP's text tower).

Token ids (B, L) and their lengths (B,) -> token + learned position embeddings -> the shared
transformer stack (:mod:`jaxmodels.layers.transformer`) with ViT-style pre-LN blocks (keys past
each length masked, passed to the attention kernel as sequence lengths; optionally causal, as in
CLIP) -> pooled features (B, width). Pooling ``last`` takes the last token within the length,
``mean`` averages the tokens within the length, ``final`` takes the final position whatever the
length (HF ``SiglipTextTransformer``'s ``[:, -1]``), ``eos`` the first ``eos_id`` in the row and
``argmax`` the largest id in the row (CLIP's [EOS] activation: HF ``CLIPTextTransformer``, the
second for checkpoints whose config says ``eos_token_id=2``, where EOT is the largest id). Any
tokenizer fits: what sits after the length (its padding id) is never attended to. In place of
lengths, a (B, L) attention mask (1 = a token, any pattern, as HF takes it) masks the keys it
zeroes. With ``mask_padding=False`` the lengths are ignored: every position, padding included,
is attended to and pooled over, so ``last`` is the final position, as SigLIP's text tower reads
texts padded to its fixed length (big_vision; HF without an attention mask).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.layers.attention import AttentionInputs
from jaxmodels.layers.transformer import TransformerStack
from jaxmodels.layers.vit import encoder_config

Dtype = Any


class TextTransformer(nn.Module):
    """Text tower: token ids (B, L) and lengths (B,) -> pooled features (B, width)."""

    vocab_size: int
    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    max_len: int
    pool: str = "last"  # last | mean | final | eos | argmax (module docstring)
    eos_id: int | None = None  # the id pool="eos" looks for
    causal: bool = False
    mask_padding: bool = True  # False: padding attended and pooled (SigLIP's fixed-length texts)
    activation: str = "gelu_tanh"  # MLP activation (jaxmodels.layers.mlp; CLIP: quick_gelu)
    norm_eps: float = 1e-6  # LayerNorm epsilon (CLIP: 1e-5)
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    attention_impl: str = "auto"  # auto | xla | cudnn | splash (jaxmodels.layers.attention)
    remat_policy: str = "none"  # jaxmodels.layers.transformer.REMAT_POLICIES
    scan_layers: bool = False

    @nn.compact
    def __call__(self, tokens_BxL: jax.Array, lengths_B: jax.Array | None = None) -> jax.Array:
        """``lengths_B``: valid tokens per row (right padding), or a (B, L) attention mask; None
        means every token is valid."""
        b, length = tokens_BxL.shape
        lengths_B = lengths_B if self.mask_padding else None
        mask_BxL = None
        if lengths_B is not None and jnp.ndim(lengths_B) == 2:
            mask_BxL, lengths_B = lengths_B, jnp.sum(lengths_B, axis=1)
        if length > self.max_len:
            raise ValueError(f"text of {length} tokens exceeds model.text.max_len={self.max_len}")
        embed_init = nn.with_logical_partitioning(nn.initializers.normal(0.02), ("vocab", "embed"))
        x = nn.Embed(
            self.vocab_size,
            self.width,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            embedding_init=embed_init,
            name="token_embedding",
        )(tokens_BxL)
        pos_init = nn.with_logical_partitioning(nn.initializers.normal(0.01), ("length", "embed"))
        pos = self.param("pos_embedding", pos_init, (self.max_len, self.width), self.param_dtype)
        x = nn.with_logical_constraint(
            x + pos[:length].astype(self.dtype), ("batch", "length", "embed")
        )
        kv_lengths_B = None if lengths_B is None else jnp.clip(lengths_B, 1, length)
        inputs = AttentionInputs(kv_lengths_B=kv_lengths_B)
        if mask_BxL is not None:
            inputs = AttentionInputs(kv_mask_BxL=mask_BxL.astype(bool))
        pool_lengths_B = jnp.full((b,), length) if lengths_B is None else kv_lengths_B
        block = encoder_config(
            self.width,
            self.mlp_dim,
            self.num_heads,
            causal=self.causal,
            attention_impl=self.attention_impl,
            activation=self.activation,
            norm_eps=self.norm_eps,
        )
        x = TransformerStack(
            block,
            self.depth,
            scan_layers=self.scan_layers,
            remat_policy=self.remat_policy,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="encoder",
        )(x, inputs)
        return self._pool(x, pool_lengths_B.astype(jnp.int32), tokens_BxL, mask_BxL)

    def _pool(self, x_BxLxE, lengths_B, tokens_BxL, mask_BxL=None):
        at = {
            "last": lambda: lengths_B - 1,
            "final": lambda: jnp.full_like(lengths_B, x_BxLxE.shape[1] - 1),
            "eos": lambda: jnp.argmax(tokens_BxL == self.eos_id, axis=1),  # the first EOS
            "argmax": lambda: jnp.argmax(tokens_BxL, axis=1),  # the first largest id
        }
        if self.pool == "eos" and self.eos_id is None:
            raise ValueError("model.text.pool='eos' needs model.text.eos_id")
        if self.pool in at:
            index_B = at[self.pool]()
            return jnp.take_along_axis(x_BxLxE, index_B[:, None, None], axis=1)[:, 0]
        if self.pool == "mean":
            if mask_BxL is None:
                mask_BxL = jnp.arange(x_BxLxE.shape[1])[None, :] < lengths_B[:, None]
            total = jnp.sum(jnp.where(mask_BxL[..., None], x_BxLxE, 0), axis=1)
            return total / lengths_B[:, None].astype(x_BxLxE.dtype)
        raise ValueError(f"model.text.pool={self.pool!r}: use one of 'last', 'mean', {sorted(at)}")
