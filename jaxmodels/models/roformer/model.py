"""RoFormer (Su et al. 2021): a BERT-style bidirectional encoder with rotary position embedding.

Post-norm blocks (``LayerNorm(x + f(x))``), GELU MLP, biases everywhere, interleaved RoPE on
queries and keys; the masked-language-model head is ``LayerNorm(gelu(W h))`` followed by the
tied word embeddings plus a bias, as in BERT (Devlin et al. 2019) and the HF implementation.
Any encoding of ``layers.positions.POSITIONS`` can replace RoPE (``position``), and
``attention="linear"`` swaps softmax for linear attention with RoPE (RoFormer eq. 19).

The family (``task.py``) trains it with BERT's MLM objective (sec. 3.1, ``losses.mlm``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.layers.attention import AttentionInputs
from jaxmodels.layers.mlp import ACTIVATIONS
from jaxmodels.layers.norms import LayerNorm
from jaxmodels.layers.positions import AbsolutePositions, PositionOptions, RelativePositionBias
from jaxmodels.layers.transformer import BlockConfig, TransformerStack

Dtype = Any

# config.model.preset: sizes in the config's words (Su et al. 2021, sec. 4.1 pre-train the base
# model: 12 layers, 768 wide, 12 heads).
PRESETS = {
    "tiny": dict(width=128, depth=2, num_heads=4, mlp_dim=512),
    "small": dict(width=256, depth=4, num_heads=4, mlp_dim=1024),
    "base": dict(width=768, depth=12, num_heads=12, mlp_dim=3072),
}
# config.model keys (jaxmodels.config.GLOSSARY) -> the RoFormer fields they set.
FIELDS = {"width": "d_model", "depth": "num_layers", "mlp_dim": "d_ff"}


class RoFormer(nn.Module):
    """Encoder (+ optional MLM head); ``__call__`` returns hidden states or MLM logits."""

    vocab_size: int
    d_model: int = 768
    num_layers: int = 12
    num_heads: int = 12
    d_ff: int = 3072
    embedding_size: int | None = None  # None: d_model; else project embeddings to d_model
    type_vocab_size: int = 2  # segment (token type) embeddings
    activation: str = "gelu"  # exact erf GELU as in BERT/RoFormer
    norm_eps: float = 1e-12
    dropout_rate: float = 0.1
    position: PositionOptions = PositionOptions(name="rope", rope_layout="interleaved")
    attention: str = "softmax"  # softmax | linear (layers.attention.linear)
    mlm_head: bool = True  # False: return the last hidden state (RoFormerModel)
    tie_embeddings: bool = True  # MLM decoder shares the word embeddings
    attention_impl: str = "auto"
    scan_layers: bool = False
    remat_policy: str = "none"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def block_config(self) -> BlockConfig:
        """The post-norm BERT block with this model's position encoding."""
        return BlockConfig(
            d_model=self.d_model,
            num_heads=self.num_heads,
            d_ff=self.d_ff,
            activation=self.activation,
            norm="layernorm",
            norm_eps=self.norm_eps,
            norm_position="post",
            use_bias=True,
            causal=False,
            position=self.position,
            attention=self.attention,
            attention_impl=self.attention_impl,
            dropout_rate=self.dropout_rate,
        )

    def _dense(self, features, names, name):
        init = nn.with_logical_partitioning(nn.initializers.normal(0.02), names)
        bias = nn.with_logical_partitioning(nn.initializers.zeros, names[1:])
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        return nn.Dense(features, kernel_init=init, bias_init=bias, name=name, **kw)

    @nn.compact
    def __call__(
        self,
        input_ids_BxL: jax.Array,
        attention_mask_BxL: jax.Array | None = None,
        token_type_ids_BxL: jax.Array | None = None,
        positions_BxL: jax.Array | None = None,
        segment_ids_BxL: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        """Returns MLM logits ``BxLxV`` (or hidden states ``BxLxE`` without the head).

        ``attention_mask_BxL`` (1 = token) drops padded keys; ``segment_ids_BxL`` keeps packed
        documents apart; ``positions_BxL`` default to ``0..L-1``.
        """
        B, L = input_ids_BxL.shape
        embed_width = self.embedding_size or self.d_model
        if positions_BxL is None:
            positions_BxL = jnp.broadcast_to(jnp.arange(L, dtype=jnp.int32), (B, L))
        if token_type_ids_BxL is None:
            token_type_ids_BxL = jnp.zeros((B, L), jnp.int32)
        init = nn.with_logical_partitioning(nn.initializers.normal(0.02), ("vocab", "embed"))
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        embed = nn.Embed(
            self.vocab_size, embed_width, embedding_init=init, name="word_embeddings", **kw
        )
        x = embed(input_ids_BxL)
        type_init = nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed"))
        types = nn.Embed(
            self.type_vocab_size, embed_width, embedding_init=type_init, name="type", **kw
        )
        x = x + types(token_type_ids_BxL)
        absolute = AbsolutePositions(self.position, embed_width, name="absolute_positions", **kw)
        pos_emb = absolute(positions_BxL)
        x = x if pos_emb is None else x + pos_emb
        x = LayerNorm(self.norm_eps, name="embedding_norm", **kw)(x)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
        if self.d_model != embed_width:
            x = self._dense(self.d_model, ("embed", "mlp"), "embedding_project")(x)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        bias = RelativePositionBias(
            self.position, self.num_heads, causal=False, name="relative_bias", **kw
        )(positions_BxL, positions_BxL)
        inputs = AttentionInputs(
            positions_BxL=positions_BxL,
            segment_ids_BxL=segment_ids_BxL,
            kv_mask_BxL=attention_mask_BxL,
            bias_BxNxLxL=bias,
        )
        h = TransformerStack(
            self.block_config(),
            self.num_layers,
            scan_layers=self.scan_layers,
            remat_policy=self.remat_policy,
            deterministic=deterministic,
            name="encoder",
            **kw,
        )(x, inputs)
        if not self.mlm_head:
            return h
        return self._mlm_head(h, embed)

    def _mlm_head(self, h_BxLxE: jax.Array, embed: nn.Embed) -> jax.Array:
        """BERT's MLM head: LayerNorm(act(W h)) @ E^T + b (tied) or a separate decoder."""
        embed_width = self.embedding_size or self.d_model
        t = self._dense(embed_width, ("mlp", "embed"), "mlm_transform")(h_BxLxE)
        t = ACTIVATIONS[self.activation](t)
        t = LayerNorm(self.norm_eps, name="mlm_norm", dtype=self.dtype)(t)
        if self.tie_embeddings:
            logits = embed.attend(t)
        else:
            dec = self._dense(self.vocab_size, ("embed", "vocab"), "mlm_decoder")
            logits = dec(t)
        b_init = nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",))
        b = self.param("mlm_bias", b_init, (self.vocab_size,), self.param_dtype)
        logits = logits + b.astype(logits.dtype)
        return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))


def roformer_from_config(model_cfg: Any, vocab_size: int, **overrides) -> RoFormer:
    """Builds a :class:`RoFormer` from ``config.model``: a ``preset``'s sizes, each overridden by
    an explicit ``width``, ``depth``, ``num_heads`` or ``mlp_dim``, and the other fields by name."""
    m = dict(model_cfg)
    preset = m.pop("preset", "")
    if preset and preset not in PRESETS:
        raise ValueError(f"config.model.preset={preset!r}; choose one of {sorted(PRESETS)}")
    m = {**(PRESETS[preset] if preset else {}), **m}
    pos = {"name": "rope", "rope_layout": "interleaved", **dict(m.pop("position", {}))}
    position = PositionOptions.from_config(pos)
    known = {f.name for f in dataclasses.fields(RoFormer)} - set(FIELDS.values()) | set(FIELDS)
    unknown = sorted(set(m) - known)
    if unknown:
        raise ValueError(f"config.model has unknown key(s) {unknown}; known: {sorted(known)}")
    fields = {FIELDS.get(k, k): v for k, v in m.items()}
    return RoFormer(vocab_size=vocab_size, position=position, **{**fields, **overrides})


class T5Encoder(nn.Module):
    """T5's encoder (Raffel et al. 2020, sec. 2.1), the import target of HF ``T5EncoderModel``.

    Token embedding, pre-norm blocks whose attention adds T5's bucketed relative-position bias
    (``block.position.name == "t5"``, shared by all layers), final norm; returns the last hidden
    state. The queries are not scaled by 1/sqrt(D) in T5: the importer folds sqrt(D) into them.
    """

    block: BlockConfig
    vocab_size: int
    num_layers: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids_BxL, attention_mask_BxL=None):
        B, L = input_ids_BxL.shape
        positions_BxL = jnp.broadcast_to(jnp.arange(L, dtype=jnp.int32), (B, L))
        x = nn.Embed(self.vocab_size, self.block.d_model, dtype=self.dtype, name="embed")(
            input_ids_BxL
        )
        bias = RelativePositionBias(
            self.block.position, self.block.num_heads, causal=False, name="relative_bias"
        )(positions_BxL, positions_BxL)
        inputs = AttentionInputs(
            positions_BxL=positions_BxL, kv_mask_BxL=attention_mask_BxL, bias_BxNxLxL=bias
        )
        return TransformerStack(self.block, self.num_layers, dtype=self.dtype, name="encoder")(
            x, inputs
        )
