"""Length extrapolation: a causal LM trained at length L scored at k*L, with RoPE scalings.

Validation documents form one continuous stream (Press et al. 2022, ALiBi) cut into rows of
``k * L`` tokens (positions ``0..kL-1``), so every length scores the same tokens with longer
contexts. For rotary encodings each RoPE scaling is also applied at inference with factor
``s = k`` and trained length ``L`` (no fine-tuning). Metrics: ``ppl_x{k}`` (token perplexity)
and, for byte tokens, ``bpb_x{k}`` (bits per byte); scaled variants add ``_{scaling}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxmodels.data.text import pack_stream
from jaxmodels.losses.token import bits_per_byte, byte_weights, token_nll

# RoPE scalings tried at inference on k*L tokens (trained at L): name -> options for (k, L).
SCALINGS = {
    "linear": lambda k, L: {"type": "linear", "factor": k},  # Chen et al. 2023
    "ntk": lambda k, L: {"type": "ntk", "factor": k},  # YaRN paper eq. 14
    "yarn": lambda k, L: {"type": "yarn", "factor": k, "original_max_position_embeddings": L},
    "llama3": lambda k, L: {
        "type": "llama3",
        "factor": k,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": L,
    },
}

# scaling options (or None) -> (params, inputs_BxL, positions_BxL) -> logits_BxLxV
LogitsFactory = Callable[[Mapping[str, Any] | None], Callable]


def score(logits_fn: Callable, params, rows: dict, batch_size: int, is_bytes: bool) -> dict:
    """Perplexity (and bits per byte) of ``rows`` in fixed-size batches (the last one wraps)."""

    @jax.jit
    def sums(params, batch):
        logits = logits_fn(params, batch["inputs"], batch["positions"])
        nll = token_nll(logits, batch["targets"])
        w = batch["weights"]
        bpb = bits_per_byte(nll, batch["targets"], w)
        return (nll * w).sum(), w.sum(), bpb, byte_weights(batch["targets"], w).sum()

    n = len(rows["inputs"])
    totals = np.zeros(4)
    for i in range(0, n, batch_size):
        idx = np.arange(i, i + batch_size) % n  # wrap to keep one static shape
        valid = (np.arange(i, i + batch_size) < n).astype(np.float32)[:, None]
        batch = {key: rows[key][idx] for key in ("inputs", "positions", "targets")}
        batch["weights"] = rows["weights"][idx] * valid
        nats, count, bpb, nbytes = map(float, jax.device_get(sums(params, batch)))
        totals += (nats, count, bpb * nbytes, nbytes)
    out = {"ppl": math.exp(totals[0] / max(totals[1], 1.0))}
    if is_bytes:
        out["bpb"] = totals[2] / max(totals[3], 1.0)
    return out


def length_sweep(
    make_logits: LogitsFactory,
    params,
    docs: Sequence[np.ndarray],
    *,
    seq_len: int,
    factors: Sequence[int],
    eval_tokens: int,
    batch_size: int,
    pad_id: int,
    is_bytes: bool,
    scalings: Sequence[str] = (),
) -> dict[str, float]:
    """``{metric}_x{k}[_{scaling}]`` for every factor k (scalings only for k > 1)."""
    unknown = sorted(set(scalings) - set(SCALINGS))
    if unknown:
        raise ValueError(f"unknown RoPE scaling(s) {unknown}; choose from {sorted(SCALINGS)}")
    out = {}
    for k in factors:
        rows = pack_stream(list(docs), k * seq_len, pad_id, eval_tokens)
        variants = {"": None}
        if k > 1:
            variants |= {f"_{name}": SCALINGS[name](k, seq_len) for name in scalings}
        for suffix, scaling in variants.items():
            metrics = score(make_logits(scaling), params, rows, batch_size, is_bytes)
            out |= {f"{name}_x{k}{suffix}": v for name, v in metrics.items()}
    return out
