"""Torch state-dict entries -> the shared layers' parameter layout, for every HF converter."""

from __future__ import annotations

import numpy as np


def to_numpy(x) -> np.ndarray:
    """A torch tensor or array-like as a numpy array."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def dense(sd, prefix):
    """A torch ``Linear`` -> ``nn.Dense`` params (kernel transposed to (in, out))."""
    return {"kernel": to_numpy(sd[f"{prefix}.weight"]).T, "bias": to_numpy(sd[f"{prefix}.bias"])}


def layer_norm(sd, prefix):
    """A torch ``LayerNorm`` -> ``scale``/``bias``."""
    return {"scale": to_numpy(sd[f"{prefix}.weight"]), "bias": to_numpy(sd[f"{prefix}.bias"])}


def attention(q, k, v, out, num_heads):
    """(out, in) torch Linear weights and biases -> kernels (E, N, D) and (N, D, E)."""
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


def linear(sd, prefix):
    """A torch ``Linear``'s ``(weight, bias)`` as numpy."""
    return to_numpy(sd[f"{prefix}.weight"]), to_numpy(sd[f"{prefix}.bias"])


def mlp(sd, prefix):
    """A two-layer ``fc1``/``fc2`` MLP -> the shared MLP's ``up``/``down``."""
    return {"up": dense(sd, f"{prefix}.fc1"), "down": dense(sd, f"{prefix}.fc2")}
