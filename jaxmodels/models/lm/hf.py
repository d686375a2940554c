"""HF causal LMs -> the ``lm`` family's :class:`DecoderLM` and the parameter tree it trains.

``ARCHITECTURES`` maps an HF class name to its importer, ``(hf_config, state) -> (module,
params)``; ``*ForCausalLM`` gives logits, ``*Model`` the final normed hidden state
(``DecoderLM(logits=False)``). Call the module as the family does,
``apply(v, input_ids, positions, segment_ids)``, with the attention mask as ``segment_ids``
(padding is segment 0, tokens segment 1).

- Llama: pre-norm RMSNorm, RoPE (``half`` layout, HF's ``rope_parameters`` scalings), SwiGLU,
  GQA, optional biases;
- Bloom: ALiBi, LayerNorm (also right after the embedding), GELU (tanh), biases, tied head.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxmodels.convert.fill import Importer, importer
from jaxmodels.convert.torch_weights import (
    attention,
    dense,
    layer_norm,
    linear,
    mlp,
    strip_prefix,
    weight,
)
from jaxmodels.layers.positions import PositionOptions
from jaxmodels.layers.transformer import BlockConfig
from jaxmodels.models.lm.model import DecoderLM


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


# ---------------------------------------------------------------------------------------------
# Llama
# ---------------------------------------------------------------------------------------------


def _llama_model(config, *, lm_head: bool) -> DecoderLM:
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
    )


def _llama_params(state, config, *, lm_head: bool) -> dict:
    sd = strip_prefix(state, "model.")
    N, K = config.num_attention_heads, config.num_key_value_heads
    bias = bool(config.attention_bias)
    gated = {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
    layers = {}
    for i in range(config.num_hidden_layers):
        p = f"layers.{i}"
        qkvo = (linear(sd, f"{p}.self_attn.{n}_proj", bias) for n in "qkvo")
        layers[f"layers_{i}"] = {
            "attention_norm": layer_norm(sd, f"{p}.input_layernorm", bias=False),
            "attention": attention(*qkvo, N, K),
            "mlp_norm": layer_norm(sd, f"{p}.post_attention_layernorm", bias=False),
            "mlp": mlp(sd, f"{p}.mlp", gated, bias),
        }
    layers["final_norm"] = layer_norm(sd, "norm", bias=False)
    params = {"embedding": weight(sd, "embed_tokens.weight"), "decoder": layers}
    if lm_head and not config.tie_word_embeddings:
        params["unembedding"] = weight(sd, "lm_head.weight").T
    return params


# ---------------------------------------------------------------------------------------------
# Bloom (ALiBi)
# ---------------------------------------------------------------------------------------------


def _bloom_model(config, *, lm_head: bool) -> DecoderLM:
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
    return DecoderLM(
        vocab_size=config.vocab_size,
        num_layers=config.n_layer,
        block=block,
        tie_embeddings=True,
        logits=lm_head,
        embedding_norm=True,
    )


def _bloom_params(state, config, *, lm_head: bool) -> dict:
    head, emb = state.get("lm_head.weight"), state.get("transformer.word_embeddings.weight")
    if lm_head and head is not None and emb is not None and not np.array_equal(head, emb):
        raise ValueError("from_hf: Bloom with an untied lm_head is not supported")
    sd = strip_prefix(state, "transformer.")
    N, E = config.n_head, config.hidden_size
    layers = {}
    for i in range(config.n_layer):
        p = f"h.{i}"
        # the fused projection's rows are (head, q|k|v, head dim)
        w = weight(sd, f"{p}.self_attention.query_key_value.weight").reshape(N, 3, -1, E)
        b = weight(sd, f"{p}.self_attention.query_key_value.bias").reshape(N, 3, -1)
        qkv = [(w[:, j].reshape(-1, E), b[:, j].reshape(-1)) for j in range(3)]
        layers[f"layers_{i}"] = {
            "attention_norm": layer_norm(sd, f"{p}.input_layernorm"),
            "attention": attention(*qkv, linear(sd, f"{p}.self_attention.dense"), N),
            "mlp_norm": layer_norm(sd, f"{p}.post_attention_layernorm"),
            "mlp": {"up": dense(sd, f"{p}.mlp.dense_h_to_4h"),
                    "down": dense(sd, f"{p}.mlp.dense_4h_to_h")},
        }  # fmt: skip
    layers["final_norm"] = layer_norm(sd, "ln_f")
    return {
        "embedding": weight(sd, "word_embeddings.weight"),
        "embedding_norm": layer_norm(sd, "word_embeddings_layernorm"),
        "decoder": layers,
    }


_FAMILIES = {"Llama": (_llama_model, _llama_params), "Bloom": (_bloom_model, _bloom_params)}
ARCHITECTURES: dict[str, Importer] = {
    f"{name}{suffix}": importer(
        f"{name}{suffix}",
        functools.partial(build, lm_head=suffix == "ForCausalLM"),
        functools.partial(convert, lm_head=suffix == "ForCausalLM"),
    )
    for name, (build, convert) in _FAMILIES.items()
    for suffix in ("Model", "ForCausalLM")
}
