"""HF architectures for ``from_hf``: each a linen module builder and a state-dict converter.

Llama becomes the ``lm`` family's ``DecoderLM`` and RoFormer the ``roformer`` family's
``RoFormer``, with the parameter trees those families train. Bloom (ALiBi) and the T5 encoder
have no family here and use :class:`TokenTransformer`.

Converters map torch ``Linear`` weights ``(out, in)`` to linen kernels ``(in, ...out)`` and
return flat ``{param path tuple: array}`` dicts that ``from_hf`` checks against the module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxmodels.layers.attention import AttentionInputs
from jaxmodels.layers.norms import LayerNorm
from jaxmodels.layers.positions import PositionOptions, RelativePositionBias
from jaxmodels.layers.transformer import BlockConfig, TransformerStack


def _take(state: dict[str, np.ndarray], prefix: str) -> Callable[[str], np.ndarray]:
    """Returns ``get(name)`` reading ``prefix + name``, naming a missing weight in its error."""

    def get(name: str) -> np.ndarray:
        key = prefix + name
        if key not in state:
            raise ValueError(f"from_hf: weight {key!r} is missing from the checkpoint")
        return state[key]

    return get


def _strip(state: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """Drops a leading ``prefix`` (e.g. ``roformer.``) from keys that have it."""
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}


def _attention(get, N: int, K: int, H: int, bias: bool) -> dict[tuple[str, ...], np.ndarray]:
    """torch Linear (out, in) q/k/v/o -> DenseGeneral kernels (E, N, H) and (N, H, E)."""
    q, k, v, o = (get(f"{n}.weight") for n in ("q", "k", "v", "o"))
    out = {
        ("query", "kernel"): q.T.reshape(-1, N, H),
        ("key", "kernel"): k.T.reshape(-1, K, H),
        ("value", "kernel"): v.T.reshape(-1, K, H),
        ("out", "kernel"): o.T.reshape(N, H, -1),
    }
    if bias:
        out[("query", "bias")] = get("q.bias").reshape(N, H)
        out[("key", "bias")] = get("k.bias").reshape(K, H)
        out[("value", "bias")] = get("v.bias").reshape(K, H)
        out[("out", "bias")] = get("o.bias")
    return out


def _prefixed(prefix: tuple[str, ...], d: Mapping[tuple[str, ...], np.ndarray]) -> dict:
    return {prefix + k: v for k, v in d.items()}


# ---------------------------------------------------------------------------------------------
# RoFormer
# ---------------------------------------------------------------------------------------------


def _build_roformer(config, dtype, *, mlm: bool):
    from jaxmodels.models.roformer.model import RoFormer

    if getattr(config, "rotary_value", False):
        raise ValueError("from_hf: RoFormer with rotary_value=True is not supported")
    if getattr(config, "is_decoder", False):
        raise ValueError("from_hf: RoFormer with is_decoder=True is not supported (encoder only)")
    act = config.hidden_act if isinstance(config.hidden_act, str) else None
    if act not in ("gelu", "relu", "gelu_new", "silu"):
        raise ValueError(f"from_hf: RoFormer hidden_act={config.hidden_act!r} is not supported")
    act = {"gelu_new": "gelu_tanh"}.get(act, act)
    return RoFormer(
        vocab_size=config.vocab_size,
        d_model=config.hidden_size,
        num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        d_ff=config.intermediate_size,
        embedding_size=config.embedding_size,
        type_vocab_size=config.type_vocab_size,
        activation=act,
        norm_eps=config.layer_norm_eps,
        dropout_rate=0.0,
        position=PositionOptions(
            name="rope", rope_layout="interleaved", max_len=config.max_position_embeddings
        ),
        mlm_head=mlm,
        tie_embeddings=bool(getattr(config, "tie_word_embeddings", True)),
        attention_impl="xla",
        dtype=dtype or jnp.float32,
    )


def _convert_roformer(state, config, *, mlm: bool) -> dict[tuple[str, ...], np.ndarray]:
    s = _strip(state, "roformer.")
    get = _take(s, "")
    N = config.num_attention_heads
    H = config.hidden_size // N
    out = {
        ("word_embeddings", "embedding"): get("embeddings.word_embeddings.weight"),
        ("type", "embedding"): get("embeddings.token_type_embeddings.weight"),
        ("embedding_norm", "scale"): get("embeddings.LayerNorm.weight"),
        ("embedding_norm", "bias"): get("embeddings.LayerNorm.bias"),
    }
    if config.embedding_size != config.hidden_size:
        out[("embedding_project", "kernel")] = get("embeddings_project.weight").T
        out[("embedding_project", "bias")] = get("embeddings_project.bias")
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        names = {"q": "attention.self.query", "k": "attention.self.key"}
        names |= {"v": "attention.self.value", "o": "attention.output.dense"}
        attn = _attention(lambda n, p=p, names=names: get(p + names[n[0]] + n[1:]), N, N, H, True)
        layer = ("encoder", f"layers_{i}")
        out |= _prefixed((*layer, "attention"), attn)
        for ours, theirs in (
            ("attention_norm", "attention.output.LayerNorm"),
            ("mlp_norm", "output.LayerNorm"),
        ):
            out[(*layer, ours, "scale")] = get(f"{p}{theirs}.weight")
            out[(*layer, ours, "bias")] = get(f"{p}{theirs}.bias")
        for ours, theirs in (("up", "intermediate.dense"), ("down", "output.dense")):
            out[(*layer, "mlp", ours, "kernel")] = get(f"{p}{theirs}.weight").T
            out[(*layer, "mlp", ours, "bias")] = get(f"{p}{theirs}.bias")
    if mlm:
        c = "cls.predictions."
        out[("mlm_transform", "kernel")] = get(c + "transform.dense.weight").T
        out[("mlm_transform", "bias")] = get(c + "transform.dense.bias")
        out[("mlm_norm", "scale")] = get(c + "transform.LayerNorm.weight")
        out[("mlm_norm", "bias")] = get(c + "transform.LayerNorm.bias")
        # the decoder bias is tied to ``cls.predictions.bias``; saved files keep only one of them
        bias = c + "decoder.bias" if c + "decoder.bias" in s else c + "bias"
        out[("mlm_bias",)] = get(bias)
        if not getattr(config, "tie_word_embeddings", True):
            out[("mlm_decoder", "kernel")] = get(c + "decoder.weight").T
            out[("mlm_decoder", "bias")] = np.zeros(config.vocab_size, np.float32)
    return out


# ---------------------------------------------------------------------------------------------
# Llama
# ---------------------------------------------------------------------------------------------


class TokenTransformer(nn.Module):
    """Token embedding (optionally normed), pre-norm blocks, LM head: Llama, Bloom, T5 encoder.

    ``block.position`` names the logit bias it adds: ALiBi (Bloom) or T5's buckets.
    """

    block: BlockConfig
    vocab_size: int
    num_layers: int
    lm_head: bool = True  # False: the normed last hidden state (*Model classes)
    tie_embeddings: bool = False
    embedding_norm: bool = False  # LayerNorm after the embedding (Bloom)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids_BxL, attention_mask_BxL=None, positions_BxL=None):
        B, L = input_ids_BxL.shape
        if positions_BxL is None:
            positions_BxL = jnp.broadcast_to(jnp.arange(L, dtype=jnp.int32), (B, L))
        embed = nn.Embed(self.vocab_size, self.block.d_model, dtype=self.dtype, name="embed")
        x = embed(input_ids_BxL)
        if self.embedding_norm:
            x = LayerNorm(self.block.norm_eps, dtype=self.dtype, name="embedding_norm")(x)
        bias = RelativePositionBias(
            self.block.position,
            self.block.num_heads,
            causal=self.block.causal,
            name="relative_bias",
        )(positions_BxL, positions_BxL)
        inputs = AttentionInputs(
            positions_BxL=positions_BxL, kv_mask_BxL=attention_mask_BxL, bias_BxNxLxL=bias
        )
        h = TransformerStack(self.block, self.num_layers, dtype=self.dtype, name="decoder")(
            x, inputs
        )
        if not self.lm_head:
            return h
        if self.tie_embeddings:
            return embed.attend(h)
        return nn.Dense(self.vocab_size, use_bias=False, dtype=self.dtype, name="lm_head")(h)


def hf_rope_scaling(params: Mapping[str, Any], max_position_embeddings: int) -> dict[str, Any]:
    """Maps an HF ``rope_parameters`` dict to ``layers.rope_scaling`` options."""
    p = dict(params)
    kind = p.get("rope_type", "default")
    keys = {
        "default": (),
        "linear": ("factor",),
        "dynamic": ("factor",),
        "yarn": (
            "factor",
            "original_max_position_embeddings",
            "beta_fast",
            "beta_slow",
            "attention_factor",
            "mscale",
            "truncate",
        ),
        "llama3": (
            "factor",
            "low_freq_factor",
            "high_freq_factor",
            "original_max_position_embeddings",
        ),
    }
    if kind not in keys:
        raise ValueError(f"from_hf: rope_type {kind!r} is not supported; one of {sorted(keys)}")
    if kind == "yarn" and p.get("mscale_all_dim"):
        raise ValueError("from_hf: yarn with mscale_all_dim is not supported")
    if kind == "default":
        return {}
    out = {"type": kind, **{k: p[k] for k in keys[kind] if p.get(k) is not None}}
    if kind == "dynamic":
        out["max_position_embeddings"] = max_position_embeddings
    return out


def _build_llama(config, dtype, *, lm_head: bool):
    from jaxmodels.models.lm.model import DecoderLM

    if config.hidden_act != "silu":
        raise ValueError(f"from_hf: Llama hidden_act={config.hidden_act!r} is not supported")
    if bool(config.attention_bias) != bool(getattr(config, "mlp_bias", False)):
        raise ValueError("from_hf: Llama with attention_bias != mlp_bias is not supported")
    rope = dict(config.rope_parameters)
    scaling = hf_rope_scaling(rope, config.max_position_embeddings)
    position = PositionOptions(
        name="rope",
        max_len=config.max_position_embeddings,
        rope_base=rope.get("rope_theta", 10000.0),
        rotary_fraction=rope.get("partial_rotary_factor", 1.0),
        rope_layout="half",
        rope_scaling=tuple(sorted(scaling.items())),
    )
    block = BlockConfig(
        d_model=config.hidden_size,
        num_heads=config.num_attention_heads,
        num_kv_heads=config.num_key_value_heads,
        head_dim=getattr(config, "head_dim", None),
        d_ff=config.intermediate_size,
        activation="swiglu",
        norm="rmsnorm",
        norm_eps=config.rms_norm_eps,
        norm_position="pre",
        use_bias=bool(config.attention_bias),
        causal=True,
        position=position,
        attention_impl="xla",
    )
    return DecoderLM(
        vocab_size=config.vocab_size,
        num_layers=config.num_hidden_layers,
        block=block,
        tie_embeddings=bool(config.tie_word_embeddings) or not lm_head,
        logits=lm_head,
        dtype=dtype or jnp.float32,
    )


def _convert_llama(state, config, *, lm_head: bool) -> dict[tuple[str, ...], np.ndarray]:
    s = _strip(state, "model.")
    get = _take(s, "")
    N, K = config.num_attention_heads, config.num_key_value_heads
    H = getattr(config, "head_dim", None) or config.hidden_size // N
    bias = bool(config.attention_bias)
    out = {("embedding",): get("embed_tokens.weight")}
    out[("decoder", "final_norm", "scale")] = get("norm.weight")
    for i in range(config.num_hidden_layers):
        p = f"layers.{i}."
        layer = ("decoder", f"layers_{i}")
        attn = _attention(lambda n, p=p: get(f"{p}self_attn.{n[0]}_proj{n[1:]}"), N, K, H, bias)
        out |= _prefixed((*layer, "attention"), attn)
        out[(*layer, "attention_norm", "scale")] = get(p + "input_layernorm.weight")
        out[(*layer, "mlp_norm", "scale")] = get(p + "post_attention_layernorm.weight")
        for ours in ("gate", "up", "down"):
            out[(*layer, "mlp", ours, "kernel")] = get(f"{p}mlp.{ours}_proj.weight").T
            if bias:
                out[(*layer, "mlp", ours, "bias")] = get(f"{p}mlp.{ours}_proj.bias")
    if lm_head and not config.tie_word_embeddings:
        out[("unembedding",)] = get("lm_head.weight").T
    return out


# ---------------------------------------------------------------------------------------------
# Bloom (ALiBi)
# ---------------------------------------------------------------------------------------------


def _build_bloom(config, dtype, *, lm_head: bool):
    if config.apply_residual_connection_post_layernorm:
        raise ValueError("from_hf: Bloom with apply_residual_connection_post_layernorm=True")
    if getattr(config, "pretraining_tp", 1) > 1 and getattr(config, "slow_but_exact", False):
        raise ValueError("from_hf: Bloom with slow_but_exact tensor-parallel slicing")
    block = BlockConfig(
        d_model=config.hidden_size,
        num_heads=config.n_head,
        d_ff=4 * config.hidden_size,
        activation="gelu_tanh",
        norm="layernorm",
        norm_eps=config.layer_norm_epsilon,
        norm_position="pre",
        use_bias=True,
        causal=True,
        position=PositionOptions(name="alibi"),
        attention_impl="xla",
    )
    return TokenTransformer(
        block,
        config.vocab_size,
        config.n_layer,
        lm_head=lm_head,
        tie_embeddings=True,
        embedding_norm=True,
        dtype=dtype or jnp.float32,
    )


def _convert_bloom(state, config, *, lm_head: bool) -> dict[tuple[str, ...], np.ndarray]:
    head, emb = state.get("lm_head.weight"), state.get("transformer.word_embeddings.weight")
    if lm_head and head is not None and emb is not None and not np.array_equal(head, emb):
        raise ValueError("from_hf: Bloom with an untied lm_head is not supported")
    get = _take(_strip(state, "transformer."), "")
    N, E = config.n_head, config.hidden_size
    H = E // N
    out = {("embed", "embedding"): get("word_embeddings.weight")}
    for ours, theirs in (("embedding_norm", "word_embeddings_layernorm"),
                         (("decoder", "final_norm"), "ln_f")):  # fmt: skip
        key = ours if isinstance(ours, tuple) else (ours,)
        out[(*key, "scale")] = get(f"{theirs}.weight")
        out[(*key, "bias")] = get(f"{theirs}.bias")
    for i in range(config.n_layer):
        p, layer = f"h.{i}.", ("decoder", f"layers_{i}")
        w = get(p + "self_attention.query_key_value.weight").reshape(N, 3, H, E)
        b = get(p + "self_attention.query_key_value.bias").reshape(N, 3, H)
        for j, name in enumerate(("query", "key", "value")):
            out[(*layer, "attention", name, "kernel")] = w[:, j].transpose(2, 0, 1)
            out[(*layer, "attention", name, "bias")] = b[:, j]
        out[(*layer, "attention", "out", "kernel")] = get(
            p + "self_attention.dense.weight"
        ).T.reshape(N, H, E)
        out[(*layer, "attention", "out", "bias")] = get(p + "self_attention.dense.bias")
        for ours, theirs in (("attention_norm", "input_layernorm"),
                             ("mlp_norm", "post_attention_layernorm")):  # fmt: skip
            out[(*layer, ours, "scale")] = get(f"{p}{theirs}.weight")
            out[(*layer, ours, "bias")] = get(f"{p}{theirs}.bias")
        for ours, theirs in (("up", "dense_h_to_4h"), ("down", "dense_4h_to_h")):
            out[(*layer, "mlp", ours, "kernel")] = get(f"{p}mlp.{theirs}.weight").T
            out[(*layer, "mlp", ours, "bias")] = get(f"{p}mlp.{theirs}.bias")
    return out


# ---------------------------------------------------------------------------------------------
# T5 encoder (relative bias buckets)
# ---------------------------------------------------------------------------------------------


def _build_t5_encoder(config, dtype):
    acts = {"relu": "relu", "gated-gelu": "geglu"}
    if config.feed_forward_proj not in acts:
        raise ValueError(f"from_hf: T5 feed_forward_proj={config.feed_forward_proj!r}")
    block = BlockConfig(
        d_model=config.d_model,
        num_heads=config.num_heads,
        head_dim=config.d_kv,
        d_ff=config.d_ff,
        activation=acts[config.feed_forward_proj],
        norm="rmsnorm",
        norm_eps=config.layer_norm_epsilon,
        norm_position="pre",
        use_bias=False,
        causal=False,
        position=PositionOptions(
            name="t5",
            t5_num_buckets=config.relative_attention_num_buckets,
            t5_max_distance=config.relative_attention_max_distance,
        ),
        attention_impl="xla",
    )
    return TokenTransformer(
        block, config.vocab_size, config.num_layers, lm_head=False, dtype=dtype or jnp.float32
    )


def _convert_t5_encoder(state, config) -> dict[tuple[str, ...], np.ndarray]:
    get = _take(state, "")
    N, H = config.num_heads, config.d_kv
    emb = "shared.weight" if "shared.weight" in state else "encoder.embed_tokens.weight"
    out = {("embed", "embedding"): get(emb)}
    out[("decoder", "final_norm", "scale")] = get("encoder.final_layer_norm.weight")
    bias = get("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
    out[("relative_bias", "t5", "embedding")] = bias
    for i in range(config.num_layers):
        p, layer = f"encoder.block.{i}.layer.", ("decoder", f"layers_{i}")
        attn = _attention(lambda n, p=p: get(f"{p}0.SelfAttention.{n[0]}{n[1:]}"), N, N, H, False)
        attn[("query", "kernel")] = attn[("query", "kernel")] * np.sqrt(H)  # T5 does not scale
        out |= _prefixed((*layer, "attention"), attn)
        out[(*layer, "attention_norm", "scale")] = get(p + "0.layer_norm.weight")
        out[(*layer, "mlp_norm", "scale")] = get(p + "1.layer_norm.weight")
        names = {"gate": "wi_0", "up": "wi_1"} if config.is_gated_act else {"up": "wi"}
        for ours, theirs in (*names.items(), ("down", "wo")):
            out[(*layer, "mlp", ours, "kernel")] = get(f"{p}1.DenseReluDense.{theirs}.weight").T
    return out


BUILDERS: dict[str, tuple[Callable, Callable]] = {
    "RoFormerModel": (
        lambda c, d: _build_roformer(c, d, mlm=False),
        lambda s, c: _convert_roformer(s, c, mlm=False),
    ),
    "RoFormerForMaskedLM": (
        lambda c, d: _build_roformer(c, d, mlm=True),
        lambda s, c: _convert_roformer(s, c, mlm=True),
    ),
    "LlamaModel": (
        lambda c, d: _build_llama(c, d, lm_head=False),
        lambda s, c: _convert_llama(s, c, lm_head=False),
    ),
    "LlamaForCausalLM": (
        lambda c, d: _build_llama(c, d, lm_head=True),
        lambda s, c: _convert_llama(s, c, lm_head=True),
    ),
    "BloomModel": (
        lambda c, d: _build_bloom(c, d, lm_head=False),
        lambda s, c: _convert_bloom(s, c, lm_head=False),
    ),
    "BloomForCausalLM": (
        lambda c, d: _build_bloom(c, d, lm_head=True),
        lambda s, c: _convert_bloom(s, c, lm_head=True),
    ),
    "T5EncoderModel": (_build_t5_encoder, _convert_t5_encoder),
}
