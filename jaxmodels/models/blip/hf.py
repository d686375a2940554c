"""HF ``transformers`` BLIP (PyTorch state dicts) -> the ``blip`` family's :class:`BLIP` params.

``ARCHITECTURES`` maps an HF class name to its importer, ``(hf_config, state) -> (module,
params)``.
``BlipForImageTextRetrieval`` maps onto ``BLIP(decoder=False)`` and
``BlipForConditionalGeneration`` onto ``BLIP(encoder=False)``. The vision tower is the shared
ViT with ``pool="none"``: HF's class embedding plus its position (``position_embedding[0]``)
becomes ``cls`` and the patch positions ``pos_embedding`` (the same sum, regrouped). BERT's
self-attention of the text model becomes ``attention`` (encoder) or ``causal_attention``
(decoder); its cross-attention, MLP and norms keep their shared names. The module normalises
images, as :func:`jaxmodels.models.blip.data.pixels` applies them, with the statistics of a
directory's ``preprocessor_config.json`` when it has one, else BLIP's (``BlipImageProcessor``:
OpenAI CLIP's mean and std; always for an in-memory ``transformers`` model, which carries no
image processor).

:func:`export` writes a run started from a ``BlipForConditionalGeneration`` directory back as one
(:func:`state_dict`, the inverse of :func:`convert`).
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
    torch_attention,
    torch_dense,
    torch_linear,
    torch_norm,
    weight,
)
from jaxmodels.convert.write import (
    host_float32,
    imported_source,
    with_preprocessor,
    write_pretrained,
)
from jaxmodels.data.transforms import CLIP_MEAN, CLIP_STD
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
        image,
        text,
        config.image_text_hidden_size,
        encoder=retrieval,
        decoder=not retrieval,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
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


# ---------------------------------------------------------------------------------------------
# Export: a captioner started from BlipForConditionalGeneration -> a from_pretrained directory
# ---------------------------------------------------------------------------------------------

CAPTIONER = "BlipForConditionalGeneration"
BERT_ATTENTION = {"query": "self.query", "key": "self.key", "value": "self.value",
                  "out": "output.dense"}  # fmt: skip


def vision_state(visual, depth: int) -> dict:
    """ViT(pool="none") params -> ``vision_model.*`` (the inverse of :func:`_vision`). The class
    token goes back as ``class_embedding`` beside a zero first position: HF adds the two."""
    v = "vision_model"
    pos = np.asarray(visual["pos_embedding"])
    sd = {
        f"{v}.embeddings.class_embedding": np.asarray(visual["cls"]),
        f"{v}.embeddings.position_embedding": np.concatenate([np.zeros_like(pos[:, :1]), pos], 1),
        f"{v}.embeddings.patch_embedding.weight": np.asarray(
            visual["embedding"]["kernel"]
        ).transpose(3, 2, 0, 1),
        f"{v}.embeddings.patch_embedding.bias": np.asarray(visual["embedding"]["bias"]),
    }
    enc = visual["encoder"]
    for i in range(depth):
        p, layer = f"{v}.encoder.layers.{i}", enc[f"layers_{i}"]
        attn = layer["attention"]
        qkv = ("query", "key", "value")
        sd[f"{p}.self_attn.qkv.weight"] = np.concatenate(
            [torch_linear(attn[n]["kernel"]) for n in qkv]
        )
        sd[f"{p}.self_attn.qkv.bias"] = np.concatenate(
            [np.asarray(attn[n]["bias"]).reshape(-1) for n in qkv]
        )
        sd |= torch_attention(attn, f"{p}.self_attn", {"out": "projection"})
        sd |= torch_norm(layer["attention_norm"], f"{p}.layer_norm1")
        sd |= torch_norm(layer["mlp_norm"], f"{p}.layer_norm2")
        sd |= torch_dense(layer["mlp"]["up"], f"{p}.mlp.fc1")
        sd |= torch_dense(layer["mlp"]["down"], f"{p}.mlp.fc2")
    return sd | torch_norm(enc["final_norm"], f"{v}.post_layernorm")


def decoder_state(text, depth: int) -> dict:
    """The decoder's BertText params -> ``text_decoder.*`` (the inverse of :func:`_text` and
    :func:`_lm_head`); the LM head's output weights are the word embeddings (tied)."""
    b, head = "text_decoder.bert", "text_decoder.cls.predictions"
    word = np.asarray(text["word"]["embedding"])
    sd = {
        f"{b}.embeddings.word_embeddings.weight": word,
        f"{b}.embeddings.position_embeddings.weight": np.asarray(text["position"]),
        f"{head}.decoder.weight": word,
        f"{head}.bias": np.asarray(text["lm_bias"]),
        f"{head}.decoder.bias": np.asarray(text["lm_bias"]),
    }
    sd |= torch_norm(text["embed_norm"], f"{b}.embeddings.LayerNorm")
    sd |= torch_dense(text["lm_dense"], f"{head}.transform.dense")
    sd |= torch_norm(text["lm_norm"], f"{head}.transform.LayerNorm")
    for i in range(depth):
        p, layer = f"{b}.encoder.layer.{i}", text["layers"][f"layers_{i}"]
        for ours, theirs in (
            ("causal_attention", "attention"),
            ("cross_attention", "crossattention"),
        ):
            sd |= torch_attention(layer[ours], f"{p}.{theirs}", BERT_ATTENTION)
            sd |= torch_norm(layer[f"{ours}_norm"], f"{p}.{theirs}.output.LayerNorm")
        sd |= torch_dense(layer["mlp"]["up"], f"{p}.intermediate.dense")
        sd |= torch_dense(layer["mlp"]["down"], f"{p}.output.dense")
        sd |= torch_norm(layer["mlp_norm"], f"{p}.output.LayerNorm")
    return sd


def state_dict(params, config) -> dict[str, np.ndarray]:
    """A captioner's BLIP params -> the ``BlipForConditionalGeneration`` state dict of
    ``config`` (an HF ``BlipConfig``)."""
    v, t = config.vision_config, config.text_config
    sd = vision_state(params["visual"], v.num_hidden_layers)
    return sd | decoder_state(params["text"], t.num_hidden_layers)


def export(config, params, out_dir: str, tokenizer) -> list[str]:
    """A run started from a ``BlipForConditionalGeneration`` directory (``config.init.hf``) -> a
    directory ``from_pretrained`` loads: the run's weights, the checkpoint's config and its
    other files (the tokenizer's; the run's copy of them), and a ``preprocessor_config.json``
    with the run's image statistics (``BlipImageProcessor`` loads it). A run of the family's own
    BLIP (ITC, ITM and a decoder sharing the encoder's weights, no HF class of that shape) is
    refused. Returns the names of the files written."""
    del tokenizer  # the checkpoint's own files go back as they came
    refusal = (
        f"only a blip run started from an HF {CAPTIONER} (config.init.hf) has an HF counterpart; "
        "this run's BLIP (ITC, ITM and LM over one shared text transformer) is the family's own"
    )
    source = imported_source(config, out_dir, (CAPTIONER,), refusal)
    params = host_float32(params)
    n = source.hf_config.vision_config.image_size
    defaults = dict(image_processor_type="BlipImageProcessor", size=dict(height=n, width=n))
    files = with_preprocessor(source, lambda c: build(c, CAPTIONER), defaults)
    state = state_dict(params, source.hf_config)
    return write_pretrained(out_dir, source.config_json, state, files)
