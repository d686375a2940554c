"""HF ``transformers`` SigLIP towers (PyTorch state dicts) -> the ``contrastive`` family's towers.

``SiglipVisionModel`` maps onto ``ViT(pool="map", posemb="learn")`` and ``SiglipTextModel``'s
transformer onto ``TextTransformer(pool="last")`` (non-scanned layers). Arrays are numpy; the
state dict values may be torch tensors or numpy arrays (e.g. read with safetensors).
"""

from __future__ import annotations

import numpy as np

from jaxmodels.convert.torch_weights import attention, layer_norm, linear, mlp, weight


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


def vision_params(sd, depth: int, num_heads: int) -> dict:
    """``SiglipVisionModel.state_dict()`` -> ``ViT`` params (MAP pooling, learned positions)."""
    sd = {k.removeprefix("vision_model."): v for k, v in sd.items()}
    w_in = weight(sd, "head.attention.in_proj_weight")
    b_in = weight(sd, "head.attention.in_proj_bias")
    q, k, v = ((w, b) for w, b in zip(np.split(w_in, 3), np.split(b_in, 3), strict=True))
    return {
        "embedding": {
            "kernel": weight(sd, "embeddings.patch_embedding.weight").transpose(2, 3, 1, 0),
            "bias": weight(sd, "embeddings.patch_embedding.bias"),
        },
        "pos_embedding": weight(sd, "embeddings.position_embedding.weight")[None],
        "encoder": _encoder(sd, "encoder", depth, num_heads, "post_layernorm"),
        "map_head": {
            "probe": weight(sd, "head.probe"),
            "attention": attention(q, k, v, linear(sd, "head.attention.out_proj"), num_heads),
            "norm": layer_norm(sd, "head.layernorm"),
            "mlp": mlp(sd, "head.mlp"),
        },
    }


def text_params(sd, depth: int, num_heads: int) -> dict:
    """``SiglipTextModel.state_dict()`` -> ``TextTransformer`` params (the head is separate)."""
    sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
    return {
        "token_embedding": {"embedding": weight(sd, "embeddings.token_embedding.weight")},
        "pos_embedding": weight(sd, "embeddings.position_embedding.weight"),
        "encoder": _encoder(sd, "encoder", depth, num_heads, "final_layer_norm"),
    }
