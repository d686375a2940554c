"""Text transformer tower for two-tower models (CLIP Sec. 2.4; SigLIP's text tower).

Token ids (B, L) with 0 as padding -> token + learned position embeddings -> the shared
transformer stack (:mod:`jaxmodels.layers.transformer`) with ViT-style pre-LN blocks (padding
keys masked; optionally causal, as in CLIP) -> pooled features (B, width). Pooling ``last``
takes the last non-padding token (CLIP's [EOS] activation), ``mean`` averages the non-padding
tokens.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxmodels.layers.transformer import TransformerStack
from jaxmodels.layers.vit import encoder_config

Dtype = Any


class TextTransformer(nn.Module):
    """Text tower: tokens (B, L) int, 0 = padding -> pooled features (B, width)."""

    vocab_size: int
    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    max_len: int
    pool: str = "last"  # last | mean
    causal: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    attention_impl: str = "auto"  # auto | xla | cudnn | splash (jaxmodels.layers.attention)
    remat_policy: str = "none"  # jaxmodels.layers.transformer.REMAT_POLICIES
    scan_layers: bool = False

    @nn.compact
    def __call__(self, tokens_BxL):
        b, length = tokens_BxL.shape
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
        mask_BxL = tokens_BxL != 0
        lengths_B = jnp.maximum(jnp.sum(mask_BxL, axis=1), 1).astype(jnp.int32)
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
        )(x, kv_mask_BxL=mask_BxL)
        return self._pool(x, lengths_B)

    def _pool(self, x_BxLxW, lengths_B):
        if self.pool == "last":
            return jnp.take_along_axis(x_BxLxW, (lengths_B - 1)[:, None, None], axis=1)[:, 0]
        if self.pool == "mean":
            mask_BxL = jnp.arange(x_BxLxW.shape[1])[None, :] < lengths_B[:, None]
            total = jnp.sum(jnp.where(mask_BxL[..., None], x_BxLxW, 0), axis=1)
            return total / lengths_B[:, None].astype(x_BxLxW.dtype)
        raise ValueError(f"model.text.pool={self.pool!r}: use 'last' or 'mean'")


def byte_tokenize(texts, max_len: int) -> np.ndarray:
    """UTF-8 bytes + 1 (so 0 is padding), truncated/padded to ``max_len``; vocabulary 257."""
    out = np.zeros((len(texts), max_len), np.int32)
    for i, t in enumerate(texts):
        ids = np.frombuffer(t.encode("utf-8"), np.uint8)[:max_len].astype(np.int32) + 1
        out[i, : len(ids)] = ids
    return out


BYTE_VOCAB = 257
