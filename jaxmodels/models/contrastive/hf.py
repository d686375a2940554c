"""HF ``transformers`` CLIP and SigLIP (PyTorch state dicts) -> the ``contrastive`` family.

``ARCHITECTURES`` maps ``CLIPModel`` and ``SiglipModel`` to their importers, ``(hf_config,
state) -> (TwoTowers, params)``. Call the module as the family does, on uint8 images
channels-last (it normalises them with the checkpoint's statistics: a directory's
``preprocessor_config.json`` ``image_mean`` / ``image_std`` when it has one, else the
architecture's below; an in-memory ``transformers`` model has no image processor attached, so
it takes the architecture's) and token ids with HF's attention mask: ``apply(v, images, ids,
mask, method="logits")`` is HF's ``logits_per_image``, ``method="encode_image"`` /
``"encode_text"`` HF's ``get_image_features`` / ``get_text_features`` after L2 normalisation.

- CLIP (HF ``modeling_clip.py``): a ViT with a bias-free patch embedding, a class token whose
  position is folded into it (``cls = class_embedding + position_embedding[0]``, as the BLIP
  converter does), a LayerNorm before the blocks (``pre_layrnorm``) and one after them
  (``post_layernorm``, applied to every token, then the class token pooled: the same as HF's
  norm of the pooled token); a causal text tower pooled at the first ``eos_token_id``, or at the
  largest id when the config says ``eos_token_id=2`` (HF's rule for old configs); bias-free
  projections; t' = ``logit_scale``. Images normalised by default with OpenAI's mean and std.
- SigLIP (HF ``modeling_siglip.py``): a ViT with learned positions and no class token, pooled
  by the MAP head; a bidirectional text tower pooled at the final position, its ``head`` (with a
  bias) the text projection, no image projection; t' = ``logit_scale``, b = ``logit_bias``.
  Images normalised by default with mean 0.5 and std 0.5.

The ViT / text tower converters :func:`vision_params` and :func:`text_params` also read the
standalone ``SiglipVisionModel`` / ``SiglipTextModel`` (and CLIP's) state dicts.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from jaxmodels.convert.fill import Importer, encoder_kwargs, importer
from jaxmodels.convert.torch_weights import (
    attention,
    dense,
    layer_norm,
    linear,
    mlp,
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
from jaxmodels.models.contrastive.model import TwoTowers

# SigLIP's per-channel statistics of pixels in [0, 1]: the [-1, 1] mapping (CLIP's are OpenAI's)
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)

# HF hidden_act -> jaxmodels.layers.mlp activation
ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh",
               "gelu_new": "gelu_tanh"}  # fmt: skip


def activation(config, what: str) -> str:
    """Our name for ``config.hidden_act``; another is refused naming the supported ones."""
    act = config.hidden_act
    if act not in ACTIVATIONS:
        raise ValueError(
            f"from_hf: {what} hidden_act={act!r} is not supported; one of {sorted(ACTIVATIONS)}"
        )
    return ACTIVATIONS[act]


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------


def _encoder(sd, prefix, depth, num_heads, final_ln):
    """HF encoder layers -> ``TransformerStack`` params (unrolled ``layers_i``)."""
    enc = {}
    for i in range(depth):
        p = f"{prefix}.layers.{i}"
        attn = [linear(sd, f"{p}.self_attn.{n}_proj") for n in ("q", "k", "v", "out")]
        enc[f"layers_{i}"] = {
            "attention_norm": layer_norm(sd, f"{p}.layer_norm1"),
            "attention": attention(*attn, num_heads),
            "mlp_norm": layer_norm(sd, f"{p}.layer_norm2"),
            "mlp": mlp(sd, f"{p}.mlp"),
        }
    enc["final_norm"] = layer_norm(sd, final_ln)
    return enc


def _map_head(sd, num_heads: int) -> dict:
    """SigLIP's ``head`` (a ``torch.nn.MultiheadAttention`` with fused q/k/v) -> ``MAPHead``."""
    w_in = weight(sd, "head.attention.in_proj_weight")
    b_in = weight(sd, "head.attention.in_proj_bias")
    q, k, v = ((w, b) for w, b in zip(np.split(w_in, 3), np.split(b_in, 3), strict=True))
    return {
        "probe": weight(sd, "head.probe"),
        "attention": attention(q, k, v, linear(sd, "head.attention.out_proj"), num_heads),
        "norm": layer_norm(sd, "head.layernorm"),
        "mlp": mlp(sd, "head.mlp"),
    }


def vision_params(sd, depth: int, num_heads: int, clip: bool = False) -> dict:
    """``vision_model.*`` -> ``ViT`` params: SigLIP's (MAP pooling, learned positions, patch
    bias) or, ``clip=True``, CLIP's (class token, ``pre_norm``, no patch bias)."""
    sd = {k.removeprefix("vision_model."): v for k, v in sd.items()}
    kernel = weight(sd, "embeddings.patch_embedding.weight").transpose(2, 3, 1, 0)
    pos = weight(sd, "embeddings.position_embedding.weight")[None]
    params = {"encoder": _encoder(sd, "encoder", depth, num_heads, "post_layernorm")}
    if clip:
        return params | {
            "embedding": {"kernel": kernel},
            "cls": weight(sd, "embeddings.class_embedding")[None, None] + pos[:, :1],
            "pos_embedding": pos[:, 1:],
            "pre_norm": layer_norm(sd, "pre_layrnorm"),
        }
    return params | {
        "embedding": {"kernel": kernel, "bias": weight(sd, "embeddings.patch_embedding.bias")},
        "pos_embedding": pos,
        "map_head": _map_head(sd, num_heads),
    }


def text_params(sd, depth: int, num_heads: int) -> dict:
    """``text_model.*`` (CLIP or SigLIP) -> ``TextTransformer`` params (the head is separate)."""
    sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
    return {
        "token_embedding": {"embedding": weight(sd, "embeddings.token_embedding.weight")},
        "pos_embedding": weight(sd, "embeddings.position_embedding.weight"),
        "encoder": _encoder(sd, "encoder", depth, num_heads, "final_layer_norm"),
    }


def scalar(sd, name: str) -> np.ndarray:
    """A scalar parameter stored as () or (1,) (SigLIP's ``logit_scale``)."""
    return weight(sd, name).reshape(())


def convert(sd, config, arch: str) -> dict:
    """A ``CLIPModel`` / ``SiglipModel`` state dict -> ``TwoTowers`` params."""
    v, t = config.vision_config, config.text_config
    clip = arch == "CLIPModel"
    params = {
        "img": vision_params(sd, v.num_hidden_layers, v.num_attention_heads, clip=clip),
        "txt": text_params(sd, t.num_hidden_layers, t.num_attention_heads),
        "t_prime": scalar(sd, "logit_scale"),
    }
    if clip:
        params["img_head"] = dense(sd, "visual_projection", bias=False)
        params["txt_head"] = dense(sd, "text_projection", bias=False)
    else:
        params["txt_head"] = dense(sd, "text_model.head")
        params["b"] = scalar(sd, "logit_bias")
    return params


# ---------------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------------


def _towers(v, t, arch: str) -> tuple[dict, dict]:
    """ViT / TextTransformer keyword arguments of HF vision and text configs."""
    image = encoder_kwargs(v, activation(v, f"{arch} vision_config"))
    text = encoder_kwargs(t, activation(t, f"{arch} text_config"))
    image |= dict(patch_size=v.patch_size, posemb="learn")
    return image, text | dict(vocab_size=t.vocab_size, max_len=t.max_position_embeddings)


def build(config, arch: str) -> TwoTowers:
    """The ``TwoTowers`` of an HF ``CLIPConfig`` / ``SiglipConfig`` (unrolled, XLA attention)."""
    v, t = config.vision_config, config.text_config
    image, text = _towers(v, t, arch)
    if getattr(v, "num_channels", 3) != 3:
        raise ValueError(f"from_hf: {arch} with num_channels={v.num_channels} (RGB only)")
    if arch == "CLIPModel":
        eos = t.eos_token_id
        pool = dict(pool="argmax") if eos == 2 else dict(pool="eos", eos_id=eos)  # HF's rule
        return TwoTowers(
            image | dict(pool="cls", pre_norm=True, patch_bias=False),
            text | dict(causal=True, **pool),
            config.projection_dim,
            config.logit_scale_init_value,
            None,
            image_mean=CLIP_MEAN,
            image_std=CLIP_STD,
        )
    if not getattr(v, "vision_use_head", True):
        raise ValueError("from_hf: SiglipModel with vision_use_head=False (no pooled output)")
    if t.projection_size != v.hidden_size:
        raise ValueError(
            f"from_hf: SiglipModel with text_config.projection_size={t.projection_size} != "
            f"vision_config.hidden_size={v.hidden_size} (the image features are not projected)"
        )
    return TwoTowers(
        image | dict(pool="map"),
        text | dict(pool="final"),
        t.projection_size,
        float(np.log(10.0)),
        -10.0,
        image_mean=SIGLIP_MEAN,
        image_std=SIGLIP_STD,
        image_projection=False,
        text_projection_bias=True,
    )


def example_inputs(config) -> tuple:
    """Inputs for ``init`` when checking converted shapes: uint8 images, ids, lengths."""
    size = config.vision_config.image_size
    images = jnp.zeros((1, size, size, 3), jnp.uint8)
    return images, jnp.zeros((1, 2), jnp.int32), jnp.full((1,), 2, jnp.int32)


ARCHS = ("CLIPModel", "SiglipModel")
ARCHITECTURES: dict[str, Importer] = {
    arch: importer(
        arch,
        functools.partial(build, arch=arch),
        functools.partial(convert, arch=arch),
        example_inputs,
    )
    for arch in ARCHS
}


# ---------------------------------------------------------------------------------------------
# Export: a run initialised from CLIP / SigLIP -> an HF from_pretrained directory
# ---------------------------------------------------------------------------------------------

HF_ATTENTION = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "out": "out_proj"}


def _encoder_state(enc, prefix: str, depth: int, final_ln: str) -> dict:
    """``TransformerStack`` params (unrolled) -> HF encoder layers and the final norm."""
    sd = torch_norm(enc["final_norm"], final_ln)
    for i in range(depth):
        p, layer = f"{prefix}.layers.{i}", enc[f"layers_{i}"]
        sd |= torch_attention(layer["attention"], f"{p}.self_attn", HF_ATTENTION)
        sd |= torch_norm(layer["attention_norm"], f"{p}.layer_norm1")
        sd |= torch_norm(layer["mlp_norm"], f"{p}.layer_norm2")
        sd |= torch_dense(layer["mlp"]["up"], f"{p}.mlp.fc1")
        sd |= torch_dense(layer["mlp"]["down"], f"{p}.mlp.fc2")
    return sd


def vision_state(img, depth: int, clip: bool) -> dict:
    """``ViT`` params -> ``vision_model.*`` (the inverse of :func:`vision_params`). CLIP's class
    token goes back as ``class_embedding`` with a zero first position: HF adds the two, so the
    sum is the trained one."""
    v = "vision_model"
    sd = _encoder_state(img["encoder"], f"{v}.encoder", depth, f"{v}.post_layernorm")
    sd[f"{v}.embeddings.patch_embedding.weight"] = np.asarray(img["embedding"]["kernel"]).transpose(
        3, 2, 0, 1
    )
    pos = np.asarray(img["pos_embedding"])[0]
    if clip:
        sd[f"{v}.embeddings.class_embedding"] = np.asarray(img["cls"]).reshape(-1)
        pos = np.concatenate([np.zeros_like(pos[:1]), pos])
        return sd | torch_norm(img["pre_norm"], f"{v}.pre_layrnorm") | {
            f"{v}.embeddings.position_embedding.weight": pos}  # fmt: skip
    sd[f"{v}.embeddings.patch_embedding.bias"] = np.asarray(img["embedding"]["bias"])
    sd[f"{v}.embeddings.position_embedding.weight"] = pos
    head, h = img["map_head"], f"{v}.head"
    attn = head["attention"]
    qkv = [torch_linear(attn[n]["kernel"]) for n in ("query", "key", "value")]
    sd[f"{h}.attention.in_proj_weight"] = np.concatenate(qkv)
    sd[f"{h}.attention.in_proj_bias"] = np.concatenate(
        [np.asarray(attn[n]["bias"]).reshape(-1) for n in ("query", "key", "value")]
    )
    sd |= torch_attention(attn, f"{h}.attention", {"out": "out_proj"})
    sd[f"{h}.probe"] = np.asarray(head["probe"])
    sd |= torch_norm(head["norm"], f"{h}.layernorm")
    sd |= torch_dense(head["mlp"]["up"], f"{h}.mlp.fc1")
    return sd | torch_dense(head["mlp"]["down"], f"{h}.mlp.fc2")


def text_state(txt, depth: int) -> dict:
    """``TextTransformer`` params -> ``text_model.*`` (the inverse of :func:`text_params`)."""
    t = "text_model"
    sd = _encoder_state(txt["encoder"], f"{t}.encoder", depth, f"{t}.final_layer_norm")
    sd[f"{t}.embeddings.token_embedding.weight"] = np.asarray(txt["token_embedding"]["embedding"])
    sd[f"{t}.embeddings.position_embedding.weight"] = np.asarray(txt["pos_embedding"])
    return sd


def state_dict(params, config, arch: str) -> dict[str, np.ndarray]:
    """``TwoTowers`` params -> the state dict of ``arch`` (the inverse of :func:`convert`)."""
    v, t = config.vision_config, config.text_config
    clip = arch == "CLIPModel"
    sd = vision_state(params["img"], v.num_hidden_layers, clip)
    sd |= text_state(params["txt"], t.num_hidden_layers)
    scale = np.asarray(params["t_prime"], np.float32)
    if clip:
        sd["logit_scale"] = scale.reshape(())
        sd |= torch_dense(params["img_head"], "visual_projection")
        return sd | torch_dense(params["txt_head"], "text_projection")
    sd["logit_scale"] = scale.reshape(1)
    sd["logit_bias"] = np.asarray(params["b"], np.float32).reshape(1)
    return sd | torch_dense(params["txt_head"], "text_model.head")


def export(config, params, out_dir: str, tokenizer) -> list[str]:
    """A run started from a CLIP / SigLIP directory (``config.init.hf``) -> a directory that
    ``transformers``' ``from_pretrained`` loads, with the run's weights and the checkpoint's
    config and tokenizer files (the run's copy of them), and a ``preprocessor_config.json``
    holding the run's image statistics (``CLIPImageProcessor`` / ``SiglipImageProcessor`` load
    it). A run of the family's own towers has no HF counterpart (its byte text tower, its ViT
    variants) and is refused. Returns the names of the files written."""
    del tokenizer  # the checkpoint's own files go back as they came
    refusal = (
        "only a contrastive run started from an HF CLIPModel / SiglipModel (config.init.hf) has "
        "an HF counterpart; this run's towers are the family's own"
    )
    source = imported_source(config, out_dir, tuple(ARCHITECTURES), refusal)
    params = host_float32(params)
    arch = source.architecture
    state = state_dict(params, source.hf_config, arch)
    defaults = processor_defaults(source.hf_config, arch)
    files = with_preprocessor(source, ARCHITECTURES[arch].build, defaults)
    return write_pretrained(out_dir, source.config_json, state, files)


def processor_defaults(config, arch: str) -> dict:
    """The HF image processor of ``arch`` for ``config``'s image size: CLIP resizes the shorter
    side and crops the centre, SigLIP resizes to the square (their classes' defaults)."""
    n = config.vision_config.image_size
    if arch == "CLIPModel":
        return dict(image_processor_type="CLIPImageProcessor", size=dict(shortest_edge=n),
                    crop_size=dict(height=n, width=n), do_center_crop=True)  # fmt: skip
    return dict(image_processor_type="SiglipImageProcessor", size=dict(height=n, width=n))
