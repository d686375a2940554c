"""Model FLOPs of a training step: the convention behind model TFLOP/s and MFU.

Model FLOPs count the arithmetic the model needs, not what the compiled program does (remat
recomputation and masked-out attention blocks are not counted), so they compare across
implementations.
"""

from __future__ import annotations


def transformer_train_flops(
    n_matmul: float, *, num_layers: int, seq_len: int, attn_dim: int, causal: bool = True
) -> float:
    """Model FLOPs of one training sequence (forward and backward).

    ``6 N`` per token for the ``N`` matmul parameters (Kaplan et al. 2020, Sec. 2.1: 2 N
    forward, 4 N backward) plus attention's scores and weighted sum, ``12 * layers * L * d``
    per token (PaLM, Chowdhery et al. 2022, App. B; ``d`` = heads x head_dim), halved under
    a causal mask, whose upper triangle needs no arithmetic.
    """
    attention = 12 * num_layers * seq_len**2 * attn_dim * (0.5 if causal else 1.0)
    return 6 * n_matmul * seq_len + attention
