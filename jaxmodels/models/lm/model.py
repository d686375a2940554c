"""RoPE decoder-only language model (Llama-style: pre-norm RMSNorm, RoPE on q/k, SwiGLU MLP).

The position encoding is ``block.position`` (any of ``layers.positions.POSITIONS``), and
``block.attention`` chooses softmax or linear attention (RoFormer eq. 19). The family's loss
is in ``loss.py``, its sampler in ``sample.py``, its ``build_task`` in ``task.py``.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.layers.attention import AttentionInputs
from jaxmodels.layers.norms import make_norm
from jaxmodels.layers.positions import AbsolutePositions, PositionOptions, RelativePositionBias
from jaxmodels.layers.transformer import BlockConfig, TransformerStack

Dtype = Any


class DecoderLM(nn.Module):
    """Token embedding -> ``num_layers`` pre-norm blocks -> final norm -> vocabulary logits."""

    vocab_size: int
    num_layers: int
    block: BlockConfig
    tie_embeddings: bool = True
    embed_init_std: float = 0.02
    scan_layers: bool = False
    remat_policy: str = "none"
    decode: bool = False
    deterministic: bool = True
    logits: bool = True  # False: return the final normed hidden state (HF ``LlamaModel``)
    embedding_norm: bool = False  # a ``block.norm`` right after the token embedding (Bloom)
    scale_embedding: bool = False  # token embeddings times sqrt(d_model) (Gemma; Vaswani sec. 3.4)
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _positions(self, B: int, T: int) -> jax.Array:
        """Default positions ``0..T-1``, offset by the tokens already decoded when caching."""
        offset = 0
        if self.decode:
            if self.block.position.name in ("t5", "alibi"):
                raise ValueError(
                    f"position={self.block.position.name!r} does not support KV-cache decoding"
                )
            index = self.variable("cache", "position_index", lambda: jnp.array(0, jnp.int32))
            offset = index.value
            if self.has_variable("cache", "position_index") and not self.is_initializing():
                index.value = offset + T
        return jnp.broadcast_to(offset + jnp.arange(T, dtype=jnp.int32), (B, T))

    @nn.compact
    def __call__(
        self,
        tokens_BxL: jax.Array,
        positions_BxL: jax.Array | None = None,
        segment_ids_BxL: jax.Array | None = None,
    ) -> jax.Array:
        """Returns logits ``[B, L, vocab_size]`` in the compute dtype ``dtype`` (hidden states
        ``[B, L, E]``): in bfloat16 the unembedding and both of its gradient matmuls run in
        bfloat16, and the loss takes the log-softmax in float32 (``losses.token``)."""
        init = nn.initializers.normal(self.embed_init_std)
        embedding_VxE = self.param(
            "embedding",
            nn.with_logical_partitioning(init, ("vocab", "embed")),
            (self.vocab_size, self.block.d_model),
            self.param_dtype,
        )
        x = jnp.take(embedding_VxE, tokens_BxL, axis=0)
        if self.scale_embedding:  # the factor rounded to the table's dtype, as HF Gemma does
            x = x * jnp.asarray(math.sqrt(self.block.d_model), x.dtype)
        x = x.astype(self.dtype)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if self.embedding_norm:
            b = self.block
            x = make_norm(b.norm, epsilon=b.norm_eps, name="embedding_norm", **kw)(x)
        bias, position = None, self.block.position
        if position.name in ("learned", "sinusoidal", "t5", "alibi"):
            if positions_BxL is None:
                positions_BxL = self._positions(*tokens_BxL.shape)
            pe = AbsolutePositions(position, self.block.d_model, name="positions", **kw)
            pe_BxLxE = pe(positions_BxL)
            x = x if pe_BxLxE is None else x + pe_BxLxE
            bias = RelativePositionBias(
                position, self.block.num_heads, causal=True, name="relative_bias", **kw
            )(positions_BxL, positions_BxL)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        inputs = AttentionInputs(
            positions_BxL=positions_BxL, segment_ids_BxL=segment_ids_BxL, bias_BxNxLxL=bias
        )
        x = TransformerStack(
            self.block,
            num_layers=self.num_layers,
            scan_layers=self.scan_layers,
            remat_policy=self.remat_policy,
            decode=self.decode,
            deterministic=self.deterministic,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="decoder",
        )(x, inputs)
        if not self.logits:
            return x
        if self.tie_embeddings:
            w_ExV = embedding_VxE.T
        else:
            w_ExV = self.param(
                "unembedding",
                nn.with_logical_partitioning(
                    nn.initializers.normal(1 / math.sqrt(self.block.d_model)), ("embed", "vocab")
                ),
                (self.block.d_model, self.vocab_size),
                self.param_dtype,
            )
        logits = jnp.einsum("ble,ev->blv", x, w_ExV.astype(self.dtype))
        return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))


def position_options(m) -> PositionOptions:
    """``config.model.position`` (every key of :class:`PositionOptions` optional)."""
    return PositionOptions.from_config(dict(m.get("position", None) or {}))


def make_model(config, vocab_size: int, **overrides) -> DecoderLM:
    """Builds the module from ``config.model`` (see experiments/lm/rope_lm.py for the keys)."""
    m = config.model
    block = BlockConfig(
        d_model=m.width,
        num_heads=m.num_heads,
        d_ff=m.mlp_dim,
        num_kv_heads=m.num_kv_heads or None,
        head_dim=m.head_dim or None,
        activation=m.activation,
        norm=m.norm,
        norm_eps=m.norm_eps,
        causal=True,
        position=position_options(m),
        attention=m.get("attention", "softmax"),
        qkv_bias=m.get("qkv_bias", False),
        qk_norm=m.get("qk_norm", False),
        sliding_window=m.get("sliding_window", 0) or None,
        attention_impl=m.attention_impl,
        dropout_rate=m.dropout_rate,
        fused_projections=m.get("fused_projections", False),
    )
    kw = dict(
        vocab_size=vocab_size,
        num_layers=m.depth,
        block=block,
        tie_embeddings=m.tie_embeddings,
        scale_embedding=m.get("scale_embedding", False),
        embed_init_std=m.embed_init_std,
        scan_layers=m.scan_layers,
        remat_policy=m.remat_policy,
        dtype=jnp.dtype(config.train.compute_dtype),
    )
    kw.update(overrides)
    return DecoderLM(**kw)
