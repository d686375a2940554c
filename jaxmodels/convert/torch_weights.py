"""Torch state-dict entries -> the shared layers' parameter layout, for every family's converter.

Every helper reads ``sd[name]`` through :func:`weight`, so a checkpoint that lacks a weight is
refused naming it. Values may be torch tensors or numpy arrays (e.g. read with safetensors).
Torch ``Linear`` weights are ``(out, in)``; linen kernels are ``(in, ...out)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

Pair = tuple[np.ndarray, np.ndarray | None]  # a torch Linear's (weight, bias or None)


def to_numpy(x) -> np.ndarray:
    """A torch tensor or array-like as a numpy array."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def weight(sd: Mapping, name: str) -> np.ndarray:
    """``sd[name]`` as numpy; a missing weight is an error naming it."""
    if name not in sd:
        raise ValueError(f"from_hf: weight {name!r} is missing from the checkpoint")
    return to_numpy(sd[name])


def strip_prefix(sd: Mapping, prefix: str) -> dict:
    """``sd`` with a leading ``prefix`` (e.g. ``model.``) dropped from the keys that have it."""
    return {k.removeprefix(prefix): v for k, v in sd.items()}


def linear(sd, prefix, bias: bool = True) -> Pair:
    """A torch ``Linear``'s ``(weight, bias)`` as numpy (bias ``None`` when ``bias=False``)."""
    return weight(sd, f"{prefix}.weight"), weight(sd, f"{prefix}.bias") if bias else None


def dense(sd, prefix, bias: bool = True) -> dict:
    """A torch ``Linear`` -> ``nn.Dense`` params (kernel transposed to (in, out))."""
    w, b = linear(sd, prefix, bias)
    return {"kernel": w.T} | ({} if b is None else {"bias": b})


def layer_norm(sd, prefix, bias: bool = True) -> dict:
    """A torch ``LayerNorm`` -> ``scale``/``bias`` (``bias=False``: an RMSNorm's ``scale``)."""
    out = {"scale": weight(sd, f"{prefix}.weight")}
    return out | ({"bias": weight(sd, f"{prefix}.bias")} if bias else {})


def attention(q: Pair, k: Pair, v: Pair, out: Pair, num_heads: int, num_kv_heads=None) -> dict:
    """q/k/v/o ``(weight, bias)`` pairs -> kernels ``(E, N, D)``, ``(E, K, D)``, ``(N, D, E)``.

    ``num_kv_heads`` (GQA/MQA) defaults to ``num_heads``; a ``None`` bias is left out.
    """
    heads = {"query": num_heads, "key": num_kv_heads or num_heads}
    heads["value"] = heads["key"]
    params = {}
    for name, (w, b) in {"query": q, "key": k, "value": v}.items():
        n = heads[name]
        params[name] = {"kernel": w.T.reshape(w.shape[1], n, -1)}
        if b is not None:
            params[name]["bias"] = b.reshape(n, -1)
    w, b = out
    params["out"] = {"kernel": w.T.reshape(num_heads, -1, w.shape[0])}
    if b is not None:
        params["out"]["bias"] = b
    return params


def mlp(sd, prefix, names: Mapping[str, str] | None = None, bias: bool = True) -> dict:
    """An MLP's torch ``Linear`` layers -> the shared MLP's ``up``/``down`` (``gate``).

    ``names`` maps ours to theirs; the default is the two-layer ``fc1``/``fc2``.
    """
    names = names or {"up": "fc1", "down": "fc2"}
    return {ours: dense(sd, f"{prefix}.{theirs}", bias) for ours, theirs in names.items()}


# ---------------------------------------------------------------------------------------------
# The other way: linen params -> torch state-dict entries (export)
# ---------------------------------------------------------------------------------------------


def torch_linear(kernel, n_in: int = 1) -> np.ndarray:
    """A linen kernel ``(*in, *out)`` (e.g. ``(E, N, D)``, ``(N, D, E)``) -> torch ``(out, in)``."""
    kernel = np.asarray(kernel)
    fan_in = int(np.prod(kernel.shape[:n_in]))
    return kernel.reshape(fan_in, -1).T


def torch_attention(params: Mapping, prefix: str, names: Mapping[str, str]) -> dict:
    """Attention params -> ``{prefix.<theirs>.weight/.bias}``; ``names`` maps ours (query, key,
    value, out) to theirs (e.g. ``q_proj``); biases (flattened) where the params have them."""
    out = {}
    for ours, theirs in names.items():
        p = params[ours]
        out[f"{prefix}.{theirs}.weight"] = torch_linear(p["kernel"], 2 if ours == "out" else 1)
        if "bias" in p:
            out[f"{prefix}.{theirs}.bias"] = np.asarray(p["bias"]).reshape(-1)
    return out


def torch_dense(params: Mapping, name: str) -> dict:
    """``nn.Dense`` params -> ``{name.weight, name.bias}`` (the bias where there is one)."""
    out = {f"{name}.weight": torch_linear(params["kernel"])}
    return out | ({f"{name}.bias": np.asarray(params["bias"])} if "bias" in params else {})


def torch_norm(params: Mapping, name: str) -> dict:
    """LayerNorm / RMSNorm params -> ``{name.weight, name.bias}`` (the bias where there is one)."""
    out = {f"{name}.weight": np.asarray(params["scale"])}
    return out | ({f"{name}.bias": np.asarray(params["bias"])} if "bias" in params else {})
