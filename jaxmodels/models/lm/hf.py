"""HF causal LMs -> the ``lm`` family's :class:`DecoderLM` and the parameter tree it trains.

``ARCHITECTURES`` maps an HF class name to its importer, ``(hf_config, state) -> (module,
params)``; ``*ForCausalLM`` gives logits, ``*Model`` the final normed hidden state
(``DecoderLM(logits=False)``). Call the module as the family does,
``apply(v, input_ids, positions, segment_ids)``, with the attention mask as ``segment_ids``
(padding is segment 0, tokens segment 1).

- Llama: pre-norm RMSNorm, RoPE (``half`` layout, HF's ``rope_parameters`` scalings), SwiGLU,
  GQA, optional biases; and what its kin add to it (:class:`Layout`): Mistral a sliding window,
  Qwen2 q/k/v biases, Qwen3 RMSNorm of q and k per head, Gemma GeGLU (tanh), RMSNorm scales
  stored as ``w`` of ``1 + w`` (imported as ``1 + w``), embeddings times sqrt(E), a head width
  of its own and a tied head;
- Bloom: ALiBi, LayerNorm (also right after the embedding), GELU (tanh), biases, tied head.
"""

from __future__ import annotations

import dataclasses
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
    torch_attention,
    torch_dense,
    torch_linear,
    weight,
)
from jaxmodels.layers.positions import PositionOptions
from jaxmodels.layers.transformer import BlockConfig, split_projections
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
# Llama and its kin: Mistral, Qwen2, Qwen3, Gemma
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one Llama-like checkpoint departs from Llama (HF ``modeling_<name>.py``)."""

    kind: str  # Llama | Mistral | Qwen2 | Qwen3 | Gemma
    bias: bool = False  # biases on q/k/v/o and the MLP (Llama's attention_bias == mlp_bias)
    qkv_bias: bool = False  # biases on q/k/v only (Qwen2)
    qk_norm: bool = False  # RMSNorm of each head's q and k (Qwen3)
    sliding_window: int | None = None  # each token sees its last W tokens (Mistral)
    gemma: bool = False  # GeGLU, norm scales stored as w of (1 + w), embeddings times sqrt(E)


KINDS = ("Llama", "Mistral", "Qwen2", "Qwen3", "Gemma")


def layout(config, kind: str) -> Layout:
    """The :class:`Layout` of an HF config of ``kind``; what does not fit is refused by name."""
    act, want = config.hidden_act, "gelu_pytorch_tanh" if kind == "Gemma" else "silu"
    if act != want:
        raise ValueError(f"from_hf: {kind} hidden_act={act!r} is not supported (only {want!r})")
    bias = bool(getattr(config, "attention_bias", False))
    if bias != bool(getattr(config, "mlp_bias", False)):
        raise ValueError(
            f"from_hf: {kind} with attention_bias={bias} but mlp_bias={not bias} is not supported"
        )
    sliding = [t for t in getattr(config, "layer_types", None) or () if t != "full_attention"]
    if sliding and kind != "Mistral":
        raise ValueError(
            f"from_hf: {kind} with sliding-window layers (use_sliding_window=True, layer_types "
            f"{sorted(set(sliding))}) is not supported; only full attention in every layer"
        )
    if getattr(config, "use_bidirectional_attention", False):
        raise ValueError(f"from_hf: {kind} with use_bidirectional_attention=True (not causal)")
    return Layout(
        kind=kind,
        bias=bias,
        qkv_bias=kind == "Qwen2",
        qk_norm=kind == "Qwen3",
        sliding_window=getattr(config, "sliding_window", None) if kind == "Mistral" else None,
        gemma=kind == "Gemma",
    )


def _decoder_model(config, *, lm_head: bool, kind: str) -> DecoderLM:
    lay = layout(config, kind)
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
        activation="geglu" if lay.gemma else "swiglu",
        norm="rmsnorm",
        norm_eps=config.rms_norm_eps,
        norm_position="pre",
        use_bias=lay.bias,
        qkv_bias=lay.qkv_bias,
        qk_norm=lay.qk_norm,
        sliding_window=lay.sliding_window,
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
        scale_embedding=lay.gemma,
    )


def _decoder_params(state, config, *, lm_head: bool, kind: str) -> dict:
    lay = layout(config, kind)
    sd = strip_prefix(state, "model.")
    N, K = config.num_attention_heads, config.num_key_value_heads
    offset = 1.0 if lay.gemma else 0.0  # Gemma's RMSNorm multiplies by (1 + w)

    def norm(name):
        return {"scale": weight(sd, f"{name}.weight") + offset}

    gated = {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
    layers = {}
    for i in range(config.num_hidden_layers):
        p = f"layers.{i}"
        qkv = (linear(sd, f"{p}.self_attn.{n}_proj", lay.bias or lay.qkv_bias) for n in "qkv")
        attn = attention(*qkv, linear(sd, f"{p}.self_attn.o_proj", lay.bias), N, K)
        if lay.qk_norm:
            attn |= {"query_norm": norm(f"{p}.self_attn.q_norm")}
            attn |= {"key_norm": norm(f"{p}.self_attn.k_norm")}
        layers[f"layers_{i}"] = {
            "attention_norm": norm(f"{p}.input_layernorm"),
            "attention": attn,
            "mlp_norm": norm(f"{p}.post_attention_layernorm"),
            "mlp": mlp(sd, f"{p}.mlp", gated, lay.bias),
        }
    layers["final_norm"] = norm("norm")
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


_FAMILIES = {
    **{
        kind: (
            functools.partial(_decoder_model, kind=kind),
            functools.partial(_decoder_params, kind=kind),
        )
        for kind in KINDS
    },
    "Bloom": (_bloom_model, _bloom_params),
}
ARCHITECTURES: dict[str, Importer] = {
    f"{name}{suffix}": importer(
        f"{name}{suffix}",
        functools.partial(build, lm_head=suffix == "ForCausalLM"),
        functools.partial(convert, lm_head=suffix == "ForCausalLM"),
    )
    for name, (build, convert) in _FAMILIES.items()
    for suffix in ("Model", "ForCausalLM")
}


# ---------------------------------------------------------------------------------------------
# Export: a run of this family -> an HF from_pretrained directory
# ---------------------------------------------------------------------------------------------

MODEL_TYPES = {"Llama": "llama", "Mistral": "mistral", "Qwen2": "qwen2", "Qwen3": "qwen3",
               "Gemma": "gemma", "Bloom": "bloom"}  # fmt: skip
HF_ATTENTION = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "out": "o_proj"}


def export(config, params, out_dir: str, tokenizer) -> list[str]:
    """A run of this family -> a directory ``AutoModelForCausalLM.from_pretrained`` loads.

    A run imported with ``init.hf`` goes back to its architecture, with the HF directory's
    config and tokenizer files (the run's copy of them); a native run to the Llama-like
    architecture its model fits (:func:`native_kind`), its tokenizer's special ids in the config.
    What fits none is refused naming the misfit. Returns the names of the files written.
    """
    from jaxmodels.convert.write import (
        check_out_dir,
        host_float32,
        init_hf_description,
        write_pretrained,
    )

    check_out_dir(out_dir)
    params = host_float32(params)
    source = init_hf_description(config)
    if source:
        cfg, as_json, files = source.hf_config, source.config_json, source.files
        kind = source.architecture.removesuffix("ForCausalLM")
        if kind == "Bloom":
            return write_pretrained(out_dir, as_json, bloom_state(params, cfg), files)
        state = decoder_state(params, layout(cfg, kind), cfg.num_hidden_layers)
        return write_pretrained(out_dir, as_json, state, files)
    from jaxmodels.models.lm.model import make_model

    model = make_model(config, params["embedding"].shape[0])
    kind, as_json = native_config(model, tokenizer)
    b = model.block
    lay = Layout(kind, qkv_bias=b.qkv_bias, qk_norm=b.qk_norm, sliding_window=b.sliding_window,
                 gemma=kind == "Gemma")  # fmt: skip
    return write_pretrained(out_dir, as_json, decoder_state(params, lay, model.num_layers))


def native_kind(model: DecoderLM) -> str:
    """The HF architecture a natively trained ``DecoderLM`` is (Llama unless one of its kin's
    switches is on); what fits none is refused naming each misfit."""
    b, p = model.block, model.block.position
    misfits = []
    if p.name != "rope":
        misfits.append(f"model.position.name={p.name!r} (HF's Llama family rotates q/k: rope)")
    elif p.rope_layout != "half":
        misfits.append(f"model.position.rope_layout={p.rope_layout!r} (HF rotates halves: half)")
    elif dict(p.rope_scaling).get("type") == "ntk":
        misfits.append("model.position.rope_scaling type 'ntk' (HF has linear/dynamic/yarn/llama3)")
    for what, value, want in (
        ("attention", b.attention, "softmax"),
        ("norm", b.norm, "rmsnorm"),
        ("norm_position", b.norm_position, "pre"),
    ):
        if value != want:
            misfits.append(f"model.{what}={value!r} (HF's is {want!r})")
    gemma = b.activation == "geglu" and model.scale_embedding
    if b.activation != "swiglu" and not gemma:
        misfits.append(
            f"model.activation={b.activation!r} (swiglu; geglu only with scale_embedding: Gemma)"
        )
    if model.scale_embedding and not gemma:
        misfits.append("model.scale_embedding=True without activation='geglu' (Gemma has both)")
    if model.embedding_norm or b.use_bias:
        misfits.append("a norm after the embedding, or biases everywhere (Bloom's, not Llama's)")
    switches = [k for k, on in (("Mistral", b.sliding_window is not None), ("Qwen2", b.qkv_bias),
                                ("Qwen3", b.qk_norm), ("Gemma", gemma)) if on]  # fmt: skip
    if len(switches) > 1:
        misfits.append(f"{' and '.join(switches)} options together (no HF architecture has both)")
    if misfits:
        raise ValueError("export: this lm run has no HF counterpart: " + "; ".join(misfits))
    return switches[0] if switches else "Llama"


def native_config(model: DecoderLM, tokenizer) -> tuple[str, dict]:
    """``(kind, config.json)`` of a natively trained ``DecoderLM`` (see :func:`native_kind`)."""
    kind, b, p = native_kind(model), model.block, model.block.position
    rope = {"rope_type": "default", "rope_theta": p.rope_base}
    scaling = dict(p.rope_scaling)
    if scaling:
        scaling.pop("max_position_embeddings", None)
        rope = {**rope, "rope_type": scaling.pop("type"), **scaling}
    if p.rotary_fraction != 1.0:
        rope["partial_rotary_factor"] = p.rotary_fraction
    as_json = {
        "architectures": [f"{kind}ForCausalLM"],
        "model_type": MODEL_TYPES[kind],
        "vocab_size": model.vocab_size,
        "hidden_size": b.d_model,
        "intermediate_size": b.d_ff,
        "num_hidden_layers": model.num_layers,
        "num_attention_heads": b.num_heads,
        "num_key_value_heads": b.num_kv_heads or b.num_heads,
        "head_dim": b.head_dim or b.d_model // b.num_heads,
        "hidden_act": "gelu_pytorch_tanh" if kind == "Gemma" else "silu",
        "max_position_embeddings": p.max_len,
        "rms_norm_eps": b.norm_eps,
        "rope_parameters": rope,
        "tie_word_embeddings": model.tie_embeddings,
        "dtype": "float32",
    }
    if kind == "Mistral":
        as_json["sliding_window"] = b.sliding_window
    for name in ("bos", "eos", "pad"):
        token_id = getattr(tokenizer, f"{name}_id", None)
        if token_id is not None:
            as_json[f"{name}_token_id"] = int(token_id)
    return kind, as_json


def _layers(decoder: Mapping, num_layers: int):
    """Each layer's params, unrolled (``layers_i``) or scanned (``layers``, leading axis)."""
    for i in range(num_layers):
        if "layers" in decoder:
            yield i, _index(decoder["layers"], i)
        else:
            yield i, decoder[f"layers_{i}"]


def _index(tree, i: int):
    return {k: _index(v, i) if isinstance(v, Mapping) else v[i] for k, v in tree.items()}


def decoder_state(params: Mapping, lay: Layout, num_layers: int) -> dict[str, np.ndarray]:
    """``DecoderLM`` params -> the HF state dict of a Llama-like ``*ForCausalLM`` (the inverse
    of the importer: Gemma's norm scales go back to ``w`` of ``1 + w``; fused projections are
    split, as HF keeps q/k/v and gate/up apart)."""
    offset = 1.0 if lay.gemma else 0.0
    dec = split_projections(params["decoder"])
    sd = {"model.embed_tokens.weight": params["embedding"],
          "model.norm.weight": dec["final_norm"]["scale"] - offset}  # fmt: skip
    gated = {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
    for i, layer in _layers(dec, num_layers):
        p, attn = f"model.layers.{i}", layer["attention"]
        sd |= torch_attention(attn, f"{p}.self_attn", HF_ATTENTION)
        if lay.qk_norm:
            sd[f"{p}.self_attn.q_norm.weight"] = attn["query_norm"]["scale"] - offset
            sd[f"{p}.self_attn.k_norm.weight"] = attn["key_norm"]["scale"] - offset
        sd[f"{p}.input_layernorm.weight"] = layer["attention_norm"]["scale"] - offset
        sd[f"{p}.post_attention_layernorm.weight"] = layer["mlp_norm"]["scale"] - offset
        for ours, theirs in gated.items():
            sd |= torch_dense(layer["mlp"][ours], f"{p}.mlp.{theirs}")
    if "unembedding" in params:
        sd["lm_head.weight"] = params["unembedding"].T
    return sd


def bloom_state(params: Mapping, config) -> dict[str, np.ndarray]:
    """``DecoderLM`` params of an imported Bloom -> its HF state dict (the fused q/k/v rows
    interleaved per head again; fused projections split first)."""
    N, E = config.n_head, config.hidden_size
    params = {**params, "decoder": split_projections(params["decoder"])}

    def norm(p):
        return {"weight": p["scale"], "bias": p["bias"]}

    t = "transformer"
    sd = {f"{t}.word_embeddings.weight": params["embedding"]}
    for name, p in (("word_embeddings_layernorm", params["embedding_norm"]),
                    ("ln_f", params["decoder"]["final_norm"])):  # fmt: skip
        sd |= {f"{t}.{name}.{k}": v for k, v in norm(p).items()}
    for i, layer in _layers(params["decoder"], config.n_layer):
        p, attn = f"{t}.h.{i}", layer["attention"]
        qkv = ("query", "key", "value")
        w = np.stack([torch_linear(attn[n]["kernel"]).reshape(N, -1, E) for n in qkv], axis=1)
        b = np.stack([np.asarray(attn[n]["bias"]) for n in qkv], axis=1)
        sd[f"{p}.self_attention.query_key_value.weight"] = w.reshape(-1, E)
        sd[f"{p}.self_attention.query_key_value.bias"] = b.reshape(-1)
        sd |= torch_attention(attn, f"{p}.self_attention", {"out": "dense"})
        for ours, theirs in (("attention_norm", "input_layernorm"),
                             ("mlp_norm", "post_attention_layernorm")):  # fmt: skip
            sd |= {f"{p}.{theirs}.{k}": v for k, v in norm(layer[ours]).items()}
        sd |= torch_dense(layer["mlp"]["up"], f"{p}.mlp.dense_h_to_4h")
        sd |= torch_dense(layer["mlp"]["down"], f"{p}.mlp.dense_4h_to_h")
    return sd
