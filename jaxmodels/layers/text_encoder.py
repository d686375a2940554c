"""Text transformer tower for two-tower models (CLIP Sec. 2.4; SigLIP's text tower).

Token ids (B, L) and their lengths (B,) -> token + learned position embeddings -> the shared
transformer stack (:mod:`jaxmodels.layers.transformer`) with ViT-style pre-LN blocks (keys past
each length masked, passed to the attention kernel as sequence lengths; optionally causal, as in
CLIP) -> pooled features (B, width). Pooling ``last`` takes the last token within the length
(CLIP's [EOS] activation), ``mean`` averages the tokens within the length. Any tokenizer fits:
what sits after the length (its padding id) is never attended to or pooled. With
``mask_padding=False`` the lengths are ignored: every position, padding included, is attended to
and pooled over, so ``last`` is the final position, as SigLIP's text tower reads texts padded to
its fixed length (big_vision; HF ``SiglipTextTransformer`` pools ``[:, -1]``).
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
    pool: str = "last"  # last | mean
    causal: bool = False
    mask_padding: bool = True  # False: padding attended and pooled (SigLIP's fixed-length texts)
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    attention_impl: str = "auto"  # auto | xla | cudnn | splash (jaxmodels.layers.attention)
    remat_policy: str = "none"  # jaxmodels.layers.transformer.REMAT_POLICIES
    scan_layers: bool = False

    @nn.compact
    def __call__(self, tokens_BxL: jax.Array, lengths_B: jax.Array | None = None) -> jax.Array:
        """``lengths_B``: valid tokens per row (right padding); None means every token is valid."""
        b, length = tokens_BxL.shape
        lengths_B = lengths_B if self.mask_padding else None
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
        pool_lengths_B = jnp.full((b,), length) if lengths_B is None else kv_lengths_B
        block = encoder_config(
            self.width,
            self.mlp_dim,
            self.num_heads,
            causal=self.causal,
            attention_impl=self.attention_impl,
        )
        x = TransformerStack(
            block,
            self.depth,
            scan_layers=self.scan_layers,
            remat_policy=self.remat_policy,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="encoder",
        )(x, AttentionInputs(kv_lengths_B=kv_lengths_B))
        return self._pool(x, pool_lengths_B.astype(jnp.int32))

    def _pool(self, x_BxLxE, lengths_B):
        if self.pool == "last":
            return jnp.take_along_axis(x_BxLxE, (lengths_B - 1)[:, None, None], axis=1)[:, 0]
        if self.pool == "mean":
            mask_BxL = jnp.arange(x_BxLxE.shape[1])[None, :] < lengths_B[:, None]
            total = jnp.sum(jnp.where(mask_BxL[..., None], x_BxLxE, 0), axis=1)
            return total / lengths_B[:, None].astype(x_BxLxE.dtype)
        raise ValueError(f"model.text.pool={self.pool!r}: use 'last' or 'mean'")
