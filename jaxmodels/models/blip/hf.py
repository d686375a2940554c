"""HF ``transformers`` BLIP (PyTorch state dicts) -> the ``blip`` family's :class:`BLIP` params.

``ARCHITECTURES`` maps an HF class name to its importer, ``(hf_config, state) -> (module,
params)``.
``BlipForImageTextRetrieval`` maps onto ``BLIP(decoder=False)`` and
``BlipForConditionalGeneration`` onto ``BLIP(encoder=False)``. The vision tower is the shared
ViT with ``pool="none"``: HF's class embedding plus its position (``position_embedding[0]``)
becomes ``cls`` and the patch positions ``pos_embedding`` (the same sum, regrouped). BERT's
self-attention of the text model becomes ``attention`` (encoder) or ``causal_attention``
(decoder); its cross-attention, MLP and norms keep their shared names.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxmodels.convert.fill import Importer, encoder_kwargs, importer
from jaxmodels.convert.torch_weights import (
    attention,
    dense,
    layer_norm,
    linear,
    mlp,
    to_numpy,
    weight,
)
from jaxmodels.models.blip.model import BLIP

ARCHS = ("BlipForImageTextRetrieval", "BlipForConditionalGeneration")


def _vision(sd, depth: int, num_heads: int) -> dict:
    """``vision_model.*`` -> ViT(pool="none") params."""
    sd = {k.removeprefix("vision_model."): v for k, v in sd.items()}
    pos = weight(sd, "embeddings.position_embedding")
    layers = {}
    for i in range(depth):
        p = f"encoder.layers.{i}"
        w_qkv, b_qkv = linear(sd, f"{p}.self_attn.qkv")
        q, k, v = zip(np.split(w_qkv, 3), np.split(b_qkv, 3), strict=True)
        out = linear(sd, f"{p}.self_attn.projection")
        layers[f"layers_{i}"] = {
            "attention_norm": layer_norm(sd, f"{p}.layer_norm1"),
            "attention": attention(q, k, v, out, num_heads),
            "mlp_norm": layer_norm(sd, f"{p}.layer_norm2"),
            "mlp": mlp(sd, f"{p}.mlp"),
        }
    layers["final_norm"] = layer_norm(sd, "post_layernorm")
    return {
        "embedding": {
            "kernel": weight(sd, "embeddings.patch_embedding.weight").transpose(2, 3, 1, 0),
            "bias": weight(sd, "embeddings.patch_embedding.bias"),
        },
        "cls": weight(sd, "embeddings.class_embedding") + pos[:, :1],
        "pos_embedding": pos[:, 1:],
        "encoder": layers,
    }


def _bert_attention(sd, prefix, num_heads):
    names = ("self.query", "self.key", "self.value", "output.dense")
    return attention(*(linear(sd, f"{prefix}.{n}") for n in names), num_heads)


def _text(sd, prefix: str, depth: int, num_heads: int, decoder: bool) -> dict:
    """``BlipTextModel`` weights under ``prefix`` -> BertText params (no LM head)."""
    sd = {k.removeprefix(prefix): v for k, v in sd.items() if k.startswith(prefix)}
    self_name = "causal_attention" if decoder else "attention"
    layers = {}
    for i in range(depth):
        p = f"encoder.layer.{i}"
        layers[f"layers_{i}"] = {
            self_name: _bert_attention(sd, f"{p}.attention", num_heads),
            f"{self_name}_norm": layer_norm(sd, f"{p}.attention.output.LayerNorm"),
            "cross_attention": _bert_attention(sd, f"{p}.crossattention", num_heads),
            "cross_attention_norm": layer_norm(sd, f"{p}.crossattention.output.LayerNorm"),
            "mlp": {
                "up": dense(sd, f"{p}.intermediate.dense"),
                "down": dense(sd, f"{p}.output.dense"),
            },
            "mlp_norm": layer_norm(sd, f"{p}.output.LayerNorm"),
        }
    return {
        "word": {"embedding": weight(sd, "embeddings.word_embeddings.weight")},
        "position": weight(sd, "embeddings.position_embeddings.weight"),
        "embed_norm": layer_norm(sd, "embeddings.LayerNorm"),
        "layers": layers,
    }


def _lm_head(sd, word_embedding) -> dict:
    """BERT's LM head; its output weights must be the tied word embeddings. ``save_pretrained``
    leaves tied weights out of the safetensors file: a missing one is the word embedding."""
    p = "text_decoder.cls.predictions"
    decoder = sd.get(f"{p}.decoder.weight", word_embedding)
    if not np.array_equal(to_numpy(decoder), word_embedding):
        raise ValueError("from_hf(BLIP): LM head weights are not tied to the word embeddings")
    return {
        "lm_dense": dense(sd, f"{p}.transform.dense"),
        "lm_norm": layer_norm(sd, f"{p}.transform.LayerNorm"),
        "lm_bias": weight(sd, f"{p}.bias"),
    }


def convert(sd, config, arch: str) -> dict:
    """HF state dict -> BLIP params for ``arch`` (one of :data:`ARCHS`)."""
    v, t = config.vision_config, config.text_config
    params = {"visual": _vision(sd, v.num_hidden_layers, v.num_attention_heads)}
    if arch == "BlipForImageTextRetrieval":
        params["text"] = _text(
            sd, "text_encoder.", t.num_hidden_layers, t.num_attention_heads, False
        )
        for name in ("vision_proj", "text_proj", "itm_head"):
            params[name] = dense(sd, name)
        params["temp"] = np.asarray(0.07, np.float32)  # HF's retrieval model has no temperature
    else:
        text = _text(sd, "text_decoder.bert.", t.num_hidden_layers, t.num_attention_heads, True)
        params["text"] = {**text, **_lm_head(sd, text["word"]["embedding"])}
    return params


def build(config, arch: str) -> BLIP:
    """The BLIP module matching an HF ``BlipConfig`` (unrolled layers, XLA attention)."""
    v, t = config.vision_config, config.text_config
    image = encoder_kwargs(v) | dict(patch_size=v.patch_size)
    text = encoder_kwargs(t) | dict(vocab_size=t.vocab_size, max_len=t.max_position_embeddings)
    retrieval = arch == "BlipForImageTextRetrieval"
    return BLIP(
        image, text, config.image_text_hidden_size, encoder=retrieval, decoder=not retrieval
    )


def example_inputs(config) -> tuple:
    """Inputs for ``init`` when checking converted shapes."""
    size = config.vision_config.image_size
    return jnp.zeros((1, size, size, 3)), jnp.zeros((1, 2), jnp.int32), jnp.ones((1, 2), jnp.int32)


ARCHITECTURES: dict[str, Importer] = {
    arch: importer(
        arch, lambda c, a=arch: build(c, a), lambda s, c, a=arch: convert(s, c, a), example_inputs
    )
    for arch in ARCHS
}
