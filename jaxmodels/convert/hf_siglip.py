"""HF ``transformers`` SigLIP towers (PyTorch state dicts) -> :mod:`jaxmodels.layers` params.

``SiglipVisionModel`` maps onto ``ViT(pool="map", posemb="learn")`` and ``SiglipTextModel``'s
transformer onto ``TextTransformer(pool="last")`` (non-scanned layers). Arrays are numpy; the
state dict values may be torch tensors or numpy arrays (e.g. read with safetensors).
"""

from __future__ import annotations

import numpy as np


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _dense(sd, prefix):
    return {"kernel": _np(sd[f"{prefix}.weight"]).T, "bias": _np(sd[f"{prefix}.bias"])}


def _ln(sd, prefix):
    return {"scale": _np(sd[f"{prefix}.weight"]), "bias": _np(sd[f"{prefix}.bias"])}


def _attention(q, k, v, out, num_heads):
    """(out, in) torch Linear weights and biases -> kernels (W, N, H) and (N, H, W)."""
    params = {}
    for name, (w, b) in {"query": q, "key": k, "value": v}.items():
        width = w.shape[1]
        params[name] = {
            "kernel": w.T.reshape(width, num_heads, -1),
            "bias": b.reshape(num_heads, -1),
        }
    w, b = out
    params["out"] = {"kernel": w.T.reshape(num_heads, -1, w.shape[0]), "bias": b}
    return params


def _linear(sd, prefix):
    return _np(sd[f"{prefix}.weight"]), _np(sd[f"{prefix}.bias"])


def _mlp(sd, prefix):
    return {"up": _dense(sd, f"{prefix}.fc1"), "down": _dense(sd, f"{prefix}.fc2")}


def _encoder(sd, prefix, depth, num_heads, final_ln):
    """HF encoder layers -> ``TransformerStack`` params (unrolled ``layers_i``)."""
    enc = {}
    for i in range(depth):
        p = f"{prefix}.layers.{i}"
        attn = [_linear(sd, f"{p}.self_attn.{n}_proj") for n in ("q", "k", "v", "out")]
        enc[f"layers_{i}"] = {
            "attention_norm": _ln(sd, f"{p}.layer_norm1"),
            "attention": _attention(*attn, num_heads),
            "mlp_norm": _ln(sd, f"{p}.layer_norm2"),
            "mlp": _mlp(sd, f"{p}.mlp"),
        }
    enc["final_norm"] = _ln(sd, final_ln)
    return enc


def vision_params(sd, depth: int, num_heads: int) -> dict:
    """``SiglipVisionModel.state_dict()`` -> ``ViT`` params (MAP pooling, learned positions)."""
    sd = {k.removeprefix("vision_model."): v for k, v in sd.items()}
    w_in = _np(sd["head.attention.in_proj_weight"])
    b_in = _np(sd["head.attention.in_proj_bias"])
    q, k, v = ((w, b) for w, b in zip(np.split(w_in, 3), np.split(b_in, 3), strict=True))
    return {
        "embedding": {
            "kernel": _np(sd["embeddings.patch_embedding.weight"]).transpose(2, 3, 1, 0),
            "bias": _np(sd["embeddings.patch_embedding.bias"]),
        },
        "pos_embedding": _np(sd["embeddings.position_embedding.weight"])[None],
        "encoder": _encoder(sd, "encoder", depth, num_heads, "post_layernorm"),
        "map_head": {
            "probe": _np(sd["head.probe"]),
            "attention": _attention(q, k, v, _linear(sd, "head.attention.out_proj"), num_heads),
            "norm": _ln(sd, "head.layernorm"),
            "mlp": _mlp(sd, "head.mlp"),
        },
    }


def text_params(sd, depth: int, num_heads: int) -> dict:
    """``SiglipTextModel.state_dict()`` -> ``TextTransformer`` params (the head is separate)."""
    sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
    return {
        "token_embedding": {"embedding": _np(sd["embeddings.token_embedding.weight"])},
        "pos_embedding": _np(sd["embeddings.position_embedding.weight"]),
        "encoder": _encoder(sd, "encoder", depth, num_heads, "final_layer_norm"),
    }
