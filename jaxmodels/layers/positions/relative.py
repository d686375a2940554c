"""Relative position encodings that act inside attention: Shaw, T5 buckets, ALiBi.

Each gives an additive logit bias (``BxNxTxS`` or broadcastable) or, for Shaw, relative key and
value embeddings. All depend on ``k_position - q_position`` only.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.layers.positions.options import PositionOptions


def relative_positions(q_positions_BxT: jax.Array, k_positions_BxS: jax.Array) -> jax.Array:
    """Returns ``k_pos - q_pos`` (memory minus query) as ``BxTxS`` int32."""
    return (k_positions_BxS[:, None, :] - q_positions_BxT[:, :, None]).astype(jnp.int32)


# ---------------------------------------------------------------------------------------------
# T5 (Raffel et al. 2020, sec. 2.1): log-spaced buckets shared across layers, one scalar per head.
# ---------------------------------------------------------------------------------------------


def t5_relative_position_bucket(
    relative_position: jax.Array,
    *,
    bidirectional: bool = True,
    num_buckets: int = 32,
    max_distance: int = 128,
) -> jax.Array:
    """Maps ``k - q`` to a bucket: half exact, half log-spaced up to ``max_distance`` (Mesh TF)."""
    buckets = jnp.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).astype(jnp.int32) * num_buckets
        n = jnp.abs(relative_position)
    else:
        n = -jnp.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    n_safe = jnp.maximum(n, 1).astype(jnp.float32)
    large = max_exact + (
        jnp.log(n_safe / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    ).astype(jnp.int32)
    large = jnp.minimum(large, num_buckets - 1)
    return buckets + jnp.where(n < max_exact, n, large)


class T5RelativeBias(nn.Module):
    """T5 relative attention bias: a learned scalar per (bucket, head), returned as ``BxNxTxS``."""

    num_heads: int
    bidirectional: bool = True
    num_buckets: int = 32
    max_distance: int = 128
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, q_positions_BxT: jax.Array, k_positions_BxS: jax.Array) -> jax.Array:
        table = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "heads")),
            (self.num_buckets, self.num_heads),
            self.param_dtype,
        )
        buckets_BxTxS = t5_relative_position_bucket(
            relative_positions(q_positions_BxT, k_positions_BxS),
            bidirectional=self.bidirectional,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )
        return jnp.take(table, buckets_BxTxS, axis=0).transpose(0, 3, 1, 2).astype(self.dtype)


# ---------------------------------------------------------------------------------------------
# ALiBi (Press et al. 2022): a fixed linear penalty m_h * |k - q| per head.
# ---------------------------------------------------------------------------------------------


def alibi_slopes(num_heads: int) -> jax.Array:
    """Geometric slopes 2^(-8h/n), h = 1..n; for non-powers of two, the paper's interleaving.

    With n' = 2^floor(log2 n), the first n' slopes are those of n', the rest every other slope
    of 2n' (Press et al., appendix; as in fairseq and Bloom).
    """

    def power_of_two(n: int) -> list[float]:
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = power_of_two(closest) + power_of_two(2 * closest)[0::2][: num_heads - closest]
    return jnp.asarray(slopes, jnp.float32)


def alibi_bias(
    slopes_N: jax.Array, q_positions_BxT: jax.Array, k_positions_BxS: jax.Array
) -> jax.Array:
    """ALiBi bias ``-m_h * |k - q|`` as ``BxNxTxS`` (causal masking yields the paper's -m(i-j))."""
    dist_BxTxS = jnp.abs(relative_positions(q_positions_BxT, k_positions_BxS)).astype(jnp.float32)
    return -slopes_N[None, :, None, None] * dist_BxTxS[:, None]


# ---------------------------------------------------------------------------------------------
# Shaw et al. 2018: clipped relative key (and value) embeddings a_ij, shared across heads.
# ---------------------------------------------------------------------------------------------


class ShawRelativeEmbedding(nn.Module):
    """Shaw et al. eqs. 5-6: tables w^K, w^V (``(2k+1) x D``), indices ``clip(j - i, -k, k) + k``.

    Returns ``(rel_BxTxS, w_k, w_v)`` (``w_v`` None without values); ``shaw_attention`` uses them
    without materialising ``a_ij`` for every (i, j).
    """

    head_dim: int
    max_relative_position: int = 16  # k in the paper
    values: bool = True  # also learn a_ij^V (eq. 3)
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, q_positions_BxT: jax.Array, k_positions_BxS: jax.Array):
        k = self.max_relative_position
        rel_BxTxS = jnp.clip(relative_positions(q_positions_BxT, k_positions_BxS), -k, k) + k
        init = nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "head_dim"))
        w_k = self.param("key", init, (2 * k + 1, self.head_dim), self.param_dtype)
        if not self.values:
            return rel_BxTxS, w_k.astype(self.dtype), None
        w_v = self.param("value", init, (2 * k + 1, self.head_dim), self.param_dtype)
        return rel_BxTxS, w_k.astype(self.dtype), w_v.astype(self.dtype)


def shaw_attention(
    q_BxTxNxD: jax.Array,
    k_BxSxNxD: jax.Array,
    v_BxSxNxD: jax.Array,
    rel_BxTxS: jax.Array,
    w_k_RxD: jax.Array,
    w_v_RxD: jax.Array | None,
    *,
    bias: jax.Array | None = None,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Shaw eqs. 3-4: e_ij = q_i (k_j + a^K_ij) / sqrt(d); z_i = sum_j alpha_ij (v_j + a^V_ij).

    ``q_i a^K_ij`` is read from ``q_i w^K_r`` (R = 2k+1 values per query) and ``sum_j alpha_ij
    a^V_ij`` from the attention mass per relative bucket. ``mask`` (``BxNxTxS``-broadcastable,
    True = attend) and ``bias`` (additive) are optional.
    """
    d = q_BxTxNxD.shape[-1]
    R = w_k_RxD.shape[0]
    logits = jnp.einsum("bqhd,bkhd->bhqk", q_BxTxNxD, k_BxSxNxD)
    qr_BxNxTxR = jnp.einsum("bqhd,rd->bhqr", q_BxTxNxD, w_k_RxD)
    idx = jnp.broadcast_to(rel_BxTxS[:, None], logits.shape)
    logits = logits + jnp.take_along_axis(qr_BxNxTxR, idx, axis=-1)
    logits = logits.astype(jnp.float32) / math.sqrt(d)
    if bias is not None:
        logits = logits + bias
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v_BxSxNxD.dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", probs, v_BxSxNxD)
    if w_v_RxD is not None:
        onehot_BxTxSxR = jax.nn.one_hot(rel_BxTxS, R, dtype=probs.dtype)
        mass_BxNxTxR = jnp.einsum("bhqk,bqkr->bhqr", probs, onehot_BxTxSxR)
        out = out + jnp.einsum("bhqr,rd->bqhd", mass_BxNxTxR, w_v_RxD)
    return out


# ---------------------------------------------------------------------------------------------
# The model-level bias, chosen by name
# ---------------------------------------------------------------------------------------------


class RelativePositionBias(nn.Module):
    """Returns the additive ``BxNxTxS`` logit bias of T5 or ALiBi, or None for other encodings."""

    position: PositionOptions
    num_heads: int
    causal: bool
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, q_positions_BxT: jax.Array, k_positions_BxS: jax.Array) -> jax.Array | None:
        if self.position.name == "alibi":
            slopes = alibi_slopes(self.num_heads)
            return alibi_bias(slopes, q_positions_BxT, k_positions_BxS).astype(self.dtype)
        if self.position.name == "t5":
            return T5RelativeBias(
                self.num_heads,
                bidirectional=not self.causal,
                num_buckets=self.position.t5_num_buckets,
                max_distance=self.position.t5_max_distance,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name="t5",
            )(q_positions_BxT, k_positions_BxS)
        return None
