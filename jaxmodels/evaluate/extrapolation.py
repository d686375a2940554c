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

import numpy as np

from jaxmodels.data.text import pack_stream
from jaxmodels.evaluate.chunked import chunked_map
from jaxmodels.losses.token import byte_weights, token_nll

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
    """Perplexity (and bits per byte) of ``rows``, ``batch_size`` rows per jitted call."""

    def row_sums(params, inputs, positions, targets, weights):
        nll = token_nll(logits_fn(params, inputs, positions), targets)
        w = byte_weights(targets, weights)  # bits per byte: byte targets only
        return (nll * weights).sum(1), weights.sum(1), (nll * w).sum(1), w.sum(1)

    fields = [rows[key] for key in ("inputs", "positions", "targets", "weights")]
    nats, count, byte_nats, nbytes = (
        float(x.sum(dtype=np.float64)) for x in chunked_map(row_sums, batch_size)(params, *fields)
    )
    out = {"ppl": math.exp(nats / max(count, 1.0))}
    if is_bytes:
        out["bpb"] = byte_nats / max(nbytes, 1.0) / math.log(2)
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
