"""Linear attention (Katharopoulos et al. 2020) with RoPE as in RoFormer (Su et al. 2021, eq. 19).

softmax(q k^T) is replaced by phi(q) phi(k)^T with phi(x) = elu(x) + 1 (eq. 7), so
``V'_i = phi(q_i)^T sum_j phi(k_j) v_j^T / phi(q_i)^T sum_j phi(k_j)`` costs O(L) (eqs. 5-6).
RoFormer eq. 19 rotates the feature-mapped q and k in the numerator only and keeps the
denominator unrotated (the rotated numerator may be negative; the denominator stays positive).
The causal form keeps running sums S_i = sum_{j<=i} phi(k_j) v_j^T and z_i = sum_{j<=i} phi(k_j)
(eqs. 10-12), computed with ``lax.scan`` over the sequence; the same recurrence decodes one token
at a time from a carried ``(S, z)`` (the RNN view, sec. 3.4). Packed rows (``segment_ids``)
restart the sums at every document; bidirectionally, a forward and a backward scan add up.

Shape letter beyond the legend (docs/architecture.md): ``U``, the value width of one head
(queries and keys have width ``D``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmodels.layers.positions.rotary import apply_rope

Carry = tuple[jax.Array, jax.Array]  # (S_BxNxDxU, z_BxNxD)


def elu_feature_map(x: jax.Array) -> jax.Array:
    """phi(x) = elu(x) + 1 (Katharopoulos et al. eq. 7), positive everywhere."""
    return jax.nn.elu(x) + 1.0


def _features(q, k, positions_BxL, inv_freq, layout, mask_BxL):
    """(phi(q), phi(k)) for the denominator and their rotated copies for the numerator."""
    phi_q, phi_k = elu_feature_map(q.astype(jnp.float32)), elu_feature_map(k.astype(jnp.float32))
    rq, rk = phi_q, phi_k
    if inv_freq is not None:
        rq = apply_rope(phi_q, positions_BxL, inv_freq, layout=layout)
        rk = apply_rope(phi_k, positions_BxL, inv_freq, layout=layout)
    if mask_BxL is not None:  # padded keys contribute nothing
        keep = mask_BxL[:, :, None, None].astype(jnp.float32)
        phi_k, rk = phi_k * keep, rk * keep
    return phi_q, phi_k, rq, rk


def _default_positions(q, positions_BxL, offset=0):
    B, L = q.shape[:2]
    if positions_BxL is None:
        positions_BxL = jnp.broadcast_to(offset + jnp.arange(L), (B, L))
    return positions_BxL


def _restarts(segment_ids_BxL: jax.Array | None, B: int, L: int) -> jax.Array:
    """True where a new document starts (the running sums restart there)."""
    if segment_ids_BxL is None:
        return jnp.zeros((B, L), bool)
    change = segment_ids_BxL[:, 1:] != segment_ids_BxL[:, :-1]
    return jnp.concatenate([jnp.ones((B, 1), bool), change], axis=1)


def _prefix_sums(phi_q, phi_k, rq, rk, v, restart_BxL, carry: Carry | None):
    """Eqs. 10-12: per position, numerator ``rq_i S_i`` and denominator ``phi_q_i z_i``."""

    def step(carry, xs):
        S_BxNxDxU, z_BxNxD = carry
        phi_q_i, phi_k_i, rq_i, rk_i, v_i, restart_B = xs
        keep = 1.0 - restart_B.astype(jnp.float32)
        S_BxNxDxU = S_BxNxDxU * keep[:, None, None, None] + jnp.einsum("bhd,bhe->bhde", rk_i, v_i)
        z_BxNxD = z_BxNxD * keep[:, None, None] + phi_k_i
        num = jnp.einsum("bhd,bhde->bhe", rq_i, S_BxNxDxU)
        den = jnp.einsum("bhd,bhd->bh", phi_q_i, z_BxNxD)
        return (S_BxNxDxU, z_BxNxD), (num, den)

    B, _, N, D = phi_q.shape
    U = v.shape[-1]
    if carry is None:
        carry = (jnp.zeros((B, N, D, U), jnp.float32), jnp.zeros((B, N, D), jnp.float32))
    xs = tuple(jnp.swapaxes(a, 0, 1) for a in (phi_q, phi_k, rq, rk, v, restart_BxL))
    carry, (num_LxBxNxU, den_LxBxN) = jax.lax.scan(step, carry, xs)
    return jnp.swapaxes(num_LxBxNxU, 0, 1), jnp.swapaxes(den_LxBxN, 0, 1), carry


def linear_attention(
    q_BxLxNxD: jax.Array,
    k_BxLxNxD: jax.Array,
    v_BxLxNxU: jax.Array,
    *,
    causal: bool,
    positions_BxL: jax.Array | None = None,
    inv_freq: jax.Array | None = None,
    rope_layout: str = "half",
    mask_BxL: jax.Array | None = None,
    segment_ids_BxL: jax.Array | None = None,
    eps: float = 1e-6,
) -> jax.Array:
    """Linear attention, optionally with RoPE on phi(q), phi(k) in the numerator (RoFormer eq. 19).

    ``mask_BxL`` (True = real token) drops padded keys; ``segment_ids_BxL`` keeps packed
    documents apart; ``inv_freq=None`` means no RoPE.
    """
    B, L = q_BxLxNxD.shape[:2]
    positions_BxL = _default_positions(q_BxLxNxD, positions_BxL)
    phi_q, phi_k, rq, rk = _features(
        q_BxLxNxD, k_BxLxNxD, positions_BxL, inv_freq, rope_layout, mask_BxL
    )
    v = v_BxLxNxU.astype(jnp.float32)
    if causal or segment_ids_BxL is not None:
        restart = _restarts(segment_ids_BxL, B, L)
        num, den, _ = _prefix_sums(phi_q, phi_k, rq, rk, v, restart, None)
        if not causal:  # add the keys after i: a scan over the reversed row, minus key i itself
            flip = lambda a: jnp.flip(a, axis=1)  # noqa: E731
            back = _restarts(flip(segment_ids_BxL), B, L)
            num_b, den_b, _ = _prefix_sums(*map(flip, (phi_q, phi_k, rq, rk, v)), back, None)
            num = num + flip(num_b) - jnp.einsum("blhd,blhd->blh", rq, rk)[..., None] * v
            den = den + flip(den_b) - jnp.einsum("blhd,blhd->blh", phi_q, phi_k)
    else:
        kv_BxNxDxU = jnp.einsum("blhd,blhe->bhde", rk, v)
        num = jnp.einsum("blhd,bhde->blhe", rq, kv_BxNxDxU)
        den = jnp.einsum("blhd,bhd->blh", phi_q, phi_k.sum(axis=1))
    return (num / (den[..., None] + eps)).astype(v_BxLxNxU.dtype)


def linear_attention_decode(
    q_BxTxNxD: jax.Array,
    k_BxTxNxD: jax.Array,
    v_BxTxNxU: jax.Array,
    carry: Carry,
    *,
    positions_BxT: jax.Array,
    inv_freq: jax.Array | None = None,
    rope_layout: str = "half",
    eps: float = 1e-6,
) -> tuple[jax.Array, Carry]:
    """Causal linear attention on ``T`` new tokens continuing the sums in ``carry`` (sec. 3.4)."""
    B, T = q_BxTxNxD.shape[:2]
    phi_q, phi_k, rq, rk = _features(
        q_BxTxNxD, k_BxTxNxD, positions_BxT, inv_freq, rope_layout, None
    )
    v = v_BxTxNxU.astype(jnp.float32)
    num, den, carry = _prefix_sums(phi_q, phi_k, rq, rk, v, jnp.zeros((B, T), bool), carry)
    return (num / (den[..., None] + eps)).astype(v_BxTxNxU.dtype), carry


def linear_attention_quadratic(
    q_BxLxNxD: jax.Array,
    k_BxLxNxD: jax.Array,
    v_BxLxNxU: jax.Array,
    *,
    causal: bool,
    positions_BxL: jax.Array | None = None,
    inv_freq: jax.Array | None = None,
    rope_layout: str = "half",
    mask_BxL: jax.Array | None = None,
    segment_ids_BxL: jax.Array | None = None,
    eps: float = 1e-6,
) -> jax.Array:
    """The same attention in its explicit O(L^2) form (RoFormer eq. 19 / Katharopoulos eq. 4)."""
    B, L = q_BxLxNxD.shape[:2]
    positions_BxL = _default_positions(q_BxLxNxD, positions_BxL)
    phi_q, phi_k, rq, rk = _features(
        q_BxLxNxD, k_BxLxNxD, positions_BxL, inv_freq, rope_layout, None
    )
    allowed = jnp.ones((B, 1, L, L), bool)
    if causal:
        allowed = allowed & jnp.tril(jnp.ones((L, L), bool))
    if mask_BxL is not None:
        allowed = allowed & mask_BxL[:, None, None, :]
    if segment_ids_BxL is not None:
        allowed = allowed & (segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :])[:, None]
    num_w = jnp.where(allowed, jnp.einsum("bqhd,bkhd->bhqk", rq, rk), 0.0)
    den_w = jnp.where(allowed, jnp.einsum("bqhd,bkhd->bhqk", phi_q, phi_k), 0.0)
    num = jnp.einsum("bhqk,bkhe->bqhe", num_w, v_BxLxNxU.astype(jnp.float32))
    den = den_w.sum(-1).transpose(0, 2, 1)
    return (num / (den[..., None] + eps)).astype(v_BxLxNxU.dtype)
