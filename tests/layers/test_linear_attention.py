"""Linear attention: the O(L) forms equal the explicit quadratic form, with and without RoPE."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.layers.linear_attention import linear_attention, linear_attention_quadratic
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
