"""Linear attention (Katharopoulos et al. 2020) with RoPE as in RoFormer (Su et al. 2021, eq. 19).

softmax(q k^T) is replaced by phi(q) phi(k)^T with phi(x) = elu(x) + 1 (eq. 7), so
``V'_i = phi(q_i)^T sum_j phi(k_j) v_j^T / phi(q_i)^T sum_j phi(k_j)`` costs O(L) (eqs. 5-6).
RoFormer eq. 19 rotates the feature-mapped q and k in the numerator only and keeps the
denominator unrotated (the rotated numerator may be negative; the denominator stays positive).
The causal form keeps running sums S_i = sum_{j<=i} phi(k_j) v_j^T and z_i = sum_{j<=i} phi(k_j)
(eqs. 10-12), computed here with ``lax.scan`` over the sequence.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmodels.layers.positions import apply_rope


def elu_feature_map(x: jax.Array) -> jax.Array:
    """phi(x) = elu(x) + 1 (Katharopoulos et al. eq. 7), positive everywhere."""
    return jax.nn.elu(x) + 1.0


def _features(q, k, positions_BxL, inv_freq, layout):
    """Returns (phi(q), phi(k)) for the denominator and their rotated copies for the numerator."""
    phi_q, phi_k = elu_feature_map(q.astype(jnp.float32)), elu_feature_map(k.astype(jnp.float32))
    if inv_freq is None:
        return phi_q, phi_k, phi_q, phi_k
    rq = apply_rope(phi_q, positions_BxL, inv_freq, layout=layout)
    rk = apply_rope(phi_k, positions_BxL, inv_freq, layout=layout)
    return phi_q, phi_k, rq, rk


def linear_attention(
    q_BxLxHxD: jax.Array,
    k_BxLxHxD: jax.Array,
    v_BxLxHxE: jax.Array,
    *,
    causal: bool,
    positions_BxL: jax.Array | None = None,
    inv_freq: jax.Array | None = None,
    rope_layout: str = "half",
    mask_BxL: jax.Array | None = None,
    eps: float = 1e-6,
) -> jax.Array:
    """Linear attention, optionally with RoPE on phi(q), phi(k) in the numerator (RoFormer eq. 19).

    ``mask_BxL`` (True = real token) drops padded keys; ``inv_freq=None`` means no RoPE.
    """
    B, L = q_BxLxHxD.shape[:2]
    if positions_BxL is None:
        positions_BxL = jnp.broadcast_to(jnp.arange(L), (B, L))
    phi_q, phi_k, rq, rk = _features(q_BxLxHxD, k_BxLxHxD, positions_BxL, inv_freq, rope_layout)
    v = v_BxLxHxE.astype(jnp.float32)
    if mask_BxL is not None:
        keep = mask_BxL[:, :, None, None].astype(jnp.float32)
        phi_k, rk = phi_k * keep, rk * keep
    if causal:
        out = _causal_scan(phi_q, phi_k, rq, rk, v, eps)
    else:
        kv_BxHxDxE = jnp.einsum("blhd,blhe->bhde", rk, v)
        num = jnp.einsum("blhd,bhde->blhe", rq, kv_BxHxDxE)
        den = jnp.einsum("blhd,bhd->blh", phi_q, phi_k.sum(axis=1))
        out = num / (den[..., None] + eps)
    return out.astype(v_BxLxHxE.dtype)


def _causal_scan(phi_q, phi_k, rq, rk, v, eps):
    """Eqs. 10-12: scan over positions carrying S (BxHxDxE) and z (BxHxD)."""

    def step(carry, xs):
        S_BxHxDxE, z_BxHxD = carry
        phi_q_i, phi_k_i, rq_i, rk_i, v_i = xs
        S_BxHxDxE = S_BxHxDxE + jnp.einsum("bhd,bhe->bhde", rk_i, v_i)
        z_BxHxD = z_BxHxD + phi_k_i
        num = jnp.einsum("bhd,bhde->bhe", rq_i, S_BxHxDxE)
        den = jnp.einsum("bhd,bhd->bh", phi_q_i, z_BxHxD)
        return (S_BxHxDxE, z_BxHxD), num / (den[..., None] + eps)

    B, _, H, D = phi_q.shape
    E = v.shape[-1]
    init = (jnp.zeros((B, H, D, E), jnp.float32), jnp.zeros((B, H, D), jnp.float32))
    xs = tuple(jnp.swapaxes(a, 0, 1) for a in (phi_q, phi_k, rq, rk, v))
    _, out_LxBxHxE = jax.lax.scan(step, init, xs)
    return jnp.swapaxes(out_LxBxHxE, 0, 1)


def linear_attention_quadratic(
    q_BxLxHxD: jax.Array,
    k_BxLxHxD: jax.Array,
    v_BxLxHxE: jax.Array,
    *,
    causal: bool,
    positions_BxL: jax.Array | None = None,
    inv_freq: jax.Array | None = None,
    rope_layout: str = "half",
    mask_BxL: jax.Array | None = None,
    eps: float = 1e-6,
) -> jax.Array:
    """The same attention in its explicit O(L^2) form (RoFormer eq. 19 / Katharopoulos eq. 4)."""
    B, L = q_BxLxHxD.shape[:2]
    if positions_BxL is None:
        positions_BxL = jnp.broadcast_to(jnp.arange(L), (B, L))
    phi_q, phi_k, rq, rk = _features(q_BxLxHxD, k_BxLxHxD, positions_BxL, inv_freq, rope_layout)
    allowed = jnp.ones((B, 1, L, L), bool)
    if causal:
        allowed = allowed & jnp.tril(jnp.ones((L, L), bool))
    if mask_BxL is not None:
        allowed = allowed & mask_BxL[:, None, None, :]
    num_w = jnp.where(allowed, jnp.einsum("bqhd,bkhd->bhqk", rq, rk), 0.0)
    den_w = jnp.where(allowed, jnp.einsum("bqhd,bkhd->bhqk", phi_q, phi_k), 0.0)
    num = jnp.einsum("bhqk,bkhe->bqhe", num_w, v_BxLxHxE.astype(jnp.float32))
    den = den_w.sum(-1).transpose(0, 2, 1)
    return (num / (den[..., None] + eps)).astype(v_BxLxHxE.dtype)
