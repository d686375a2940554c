"""Linear attention: the O(L) forms equal the explicit quadratic form, with and without RoPE."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.layers.attention.linear import (
    linear_attention,
    linear_attention_decode,
    linear_attention_quadratic,
)
from jaxmodels.layers.positions.rope_scaling import rope_inv_freq
from jaxmodels.layers.positions.rotary import apply_rope


def _qkv(B=2, L=9, H=2, D=8, E=6):
    ks = jax.random.split(jax.random.key(0), 3)
    return (
        jax.random.normal(ks[0], (B, L, H, D)),
        jax.random.normal(ks[1], (B, L, H, D)),
        jax.random.normal(ks[2], (B, L, H, E)),
    )


class LinearAttentionTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_causal_and_bidirectional_match_quadratic(self):
        q, k, v = _qkv()
        mask = jnp.array([[True] * 9, [True] * 6 + [False] * 3])
        for causal in (True, False):
            for inv_freq in (None, rope_inv_freq(8)):
                for m in (None, mask):
                    kw = dict(causal=causal, inv_freq=inv_freq, mask_BxL=m)
                    fast = self.variant(lambda q, k, v, kw=kw: linear_attention(q, k, v, **kw))
                    np.testing.assert_allclose(
                        fast(q, k, v), linear_attention_quadratic(q, k, v, **kw), atol=1e-4
                    )


@pytest.mark.parametrize("causal", [True, False])
def test_packed_segments_match_quadratic(causal):
    q, k, v = _qkv()
    seg = jnp.array([[1, 1, 1, 2, 2, 3, 3, 3, 3], [1, 1, 1, 1, 1, 1, 2, 0, 0]])
    kw = dict(causal=causal, inv_freq=rope_inv_freq(8), segment_ids_BxL=seg, mask_BxL=seg > 0)
    fast = jax.jit(lambda q, k, v: linear_attention(q, k, v, **kw))(q, k, v)
    np.testing.assert_allclose(fast, linear_attention_quadratic(q, k, v, **kw), atol=1e-4)
    one = dict(causal=causal, inv_freq=rope_inv_freq(8), positions_BxL=jnp.arange(3, 5)[None])
    alone = linear_attention(q[:1, 3:5], k[:1, 3:5], v[:1, 3:5], **one)
    np.testing.assert_allclose(fast[:1, 3:5], alone, atol=1e-5)  # document 2 sees only itself


def test_decoding_from_carried_sums_equals_the_causal_pass():
    q, k, v = _qkv()
    inv = rope_inv_freq(8)
    full = linear_attention(q, k, v, causal=True, inv_freq=inv)
    carry = (jnp.zeros((2, 2, 8, 6)), jnp.zeros((2, 2, 8)))
    pos = jnp.broadcast_to(jnp.arange(9), (2, 9))
    head, carry = linear_attention_decode(
        q[:, :4], k[:, :4], v[:, :4], carry, positions_BxT=pos[:, :4], inv_freq=inv
    )
    steps = [head]
    for i in range(4, 9):
        out, carry = linear_attention_decode(
            q[:, i : i + 1], k[:, i : i + 1], v[:, i : i + 1], carry,
            positions_BxT=pos[:, i : i + 1], inv_freq=inv,
        )  # fmt: skip
        steps.append(out)
    np.testing.assert_allclose(jnp.concatenate(steps, 1), full, atol=1e-5)


def test_causal_output_ignores_the_future():
    q, k, v = _qkv()
    out = linear_attention(q, k, v, causal=True, inv_freq=rope_inv_freq(8))
    v2 = v.at[:, 5:].set(100.0)
    out2 = linear_attention(q, k, v2, causal=True, inv_freq=rope_inv_freq(8))
    np.testing.assert_allclose(out[:, :5], out2[:, :5], atol=1e-5)
    assert not np.allclose(out[:, 5:], out2[:, 5:])


def test_rope_numerator_only_unrotated_denominator():
    # with v = 1 the unrotated form gives exactly 1; with RoPE the numerator changes, not the
    # denominator, so the output is sum_j <R phi(q_i), R phi(k_j)> / sum_j <phi(q_i), phi(k_j)>
    q, k, _ = _qkv()
    ones = jnp.ones(q.shape[:3] + (1,))
    np.testing.assert_allclose(linear_attention(q, k, ones, causal=True), 1.0, atol=1e-5)
    out = linear_attention(q, k, ones, causal=False, inv_freq=rope_inv_freq(8))
    phi = lambda x: jax.nn.elu(x) + 1
    pos = jnp.broadcast_to(jnp.arange(9), (2, 9))
    rq, rk = (apply_rope(phi(x), pos, rope_inv_freq(8)) for x in (q, k))
    num = jnp.einsum("bqhd,bkhd->bqh", rq, rk)
    den = jnp.einsum("bqhd,bkhd->bqh", phi(q), phi(k))
    np.testing.assert_allclose(out[..., 0], num / den, rtol=1e-4)
