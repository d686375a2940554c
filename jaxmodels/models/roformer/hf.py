"""HF bidirectional encoders -> the ``roformer`` family's modules.

``ARCHITECTURES`` maps an HF class name to its importer, ``(hf_config, state) -> (module,
params)``; the modules take ``apply(v, input_ids, attention_mask)``:

- ``RoFormerModel`` / ``RoFormerForMaskedLM``: :class:`RoFormer` (last hidden state / MLM
  logits), the module this family trains, so ``init.hf`` fine-tunes it;
- ``T5EncoderModel``: :class:`T5Encoder` (pre-norm RMSNorm, T5's bucketed relative bias), the
  encoder whose relative positions RoFormer is measured against; imported for inference.
"""

from __future__ import annotations

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
from jaxmodels.models.roformer.model import RoFormer, T5Encoder

# ---------------------------------------------------------------------------------------------
# RoFormer
# ---------------------------------------------------------------------------------------------


def _roformer_model(config, *, mlm: bool) -> RoFormer:
    if getattr(config, "rotary_value", False):
        raise ValueError("from_hf: RoFormer with rotary_value=True is not supported")
    if getattr(config, "is_decoder", False):
        raise ValueError("from_hf: RoFormer with is_decoder=True is not supported (encoder only)")
    act = config.hidden_act if isinstance(config.hidden_act, str) else None
    if act not in ("gelu", "relu", "gelu_new", "silu"):
        raise ValueError(f"from_hf: RoFormer hidden_act={config.hidden_act!r} is not supported")
    return RoFormer(
        vocab_size=config.vocab_size,
        d_model=config.hidden_size,
        num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        d_ff=config.intermediate_size,
        embedding_size=config.embedding_size,
        type_vocab_size=config.type_vocab_size,
        activation={"gelu_new": "gelu_tanh"}.get(act, act),
        norm_eps=config.layer_norm_eps,
        dropout_rate=0.0,
        position=PositionOptions(
            name="rope", rope_layout="interleaved", max_len=config.max_position_embeddings
        ),
        mlm_head=mlm,
        tie_embeddings=bool(getattr(config, "tie_word_embeddings", True)),
        attention_impl="xla",
    )


def _roformer_params(state, config, *, mlm: bool) -> dict:
    sd = strip_prefix(state, "roformer.")
    N = config.num_attention_heads
    params = {
        "word_embeddings": {"embedding": weight(sd, "embeddings.word_embeddings.weight")},
        "type": {"embedding": weight(sd, "embeddings.token_type_embeddings.weight")},
        "embedding_norm": layer_norm(sd, "embeddings.LayerNorm"),
    }
    if config.embedding_size != config.hidden_size:
        params["embedding_project"] = dense(sd, "embeddings_project")
    qkvo = ("self.query", "self.key", "self.value", "output.dense")
    layers = {}
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}"
        layers[f"layers_{i}"] = {
            "attention": attention(*(linear(sd, f"{p}.attention.{n}") for n in qkvo), N),
            "attention_norm": layer_norm(sd, f"{p}.attention.output.LayerNorm"),
            "mlp": mlp(sd, p, {"up": "intermediate.dense", "down": "output.dense"}),
            "mlp_norm": layer_norm(sd, f"{p}.output.LayerNorm"),
        }
    params["encoder"] = layers
    if mlm:
        c = "cls.predictions"
        params["mlm_transform"] = dense(sd, f"{c}.transform.dense")
        params["mlm_norm"] = layer_norm(sd, f"{c}.transform.LayerNorm")
        # the decoder bias is tied to ``cls.predictions.bias``; saved files keep only one of them
        bias = f"{c}.decoder.bias" if f"{c}.decoder.bias" in sd else f"{c}.bias"
        params["mlm_bias"] = weight(sd, bias)
        if not getattr(config, "tie_word_embeddings", True):
            params["mlm_decoder"] = {
                "kernel": weight(sd, f"{c}.decoder.weight").T,
                "bias": np.zeros(config.vocab_size, np.float32),
            }
    return params


# ---------------------------------------------------------------------------------------------
# T5 encoder (relative bias buckets)
# ---------------------------------------------------------------------------------------------


def _t5_model(config) -> T5Encoder:
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
    return T5Encoder(block, config.vocab_size, config.num_layers)


def _t5_params(state, config) -> dict:
    N, D = config.num_heads, config.d_kv
    emb = "shared.weight" if "shared.weight" in state else "encoder.embed_tokens.weight"
    names = {"gate": "wi_0", "up": "wi_1"} if config.is_gated_act else {"up": "wi"}
    layers = {}
    for i in range(config.num_layers):
        p = f"encoder.block.{i}.layer"
        attn = attention(*(linear(state, f"{p}.0.SelfAttention.{n}", False) for n in "qkvo"), N)
        attn["query"]["kernel"] = attn["query"]["kernel"] * np.sqrt(D)  # T5 does not scale
        layers[f"layers_{i}"] = {
            "attention_norm": layer_norm(state, f"{p}.0.layer_norm", bias=False),
            "attention": attn,
            "mlp_norm": layer_norm(state, f"{p}.1.layer_norm", bias=False),
            "mlp": mlp(state, f"{p}.1.DenseReluDense", names | {"down": "wo"}, bias=False),
        }
    layers["final_norm"] = layer_norm(state, "encoder.final_layer_norm", bias=False)
    bias = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    return {
        "embed": {"embedding": weight(state, emb)},
        "relative_bias": {"t5": {"embedding": weight(state, bias)}},
        "encoder": layers,
    }


ARCHITECTURES: dict[str, Importer] = {
    "RoFormerModel": importer(
        "RoFormerModel",
        lambda c: _roformer_model(c, mlm=False),
        lambda s, c: _roformer_params(s, c, mlm=False),
    ),
    "RoFormerForMaskedLM": importer(
        "RoFormerForMaskedLM",
        lambda c: _roformer_model(c, mlm=True),
        lambda s, c: _roformer_params(s, c, mlm=True),
    ),
    "T5EncoderModel": importer("T5EncoderModel", _t5_model, _t5_params),
}
