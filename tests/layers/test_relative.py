"""Relative encodings: the shift-invariance property, and parity with T5/Bloom reference code."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxmodels.layers.positions import relative as R


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (8, 20)])
def test_t5_buckets_match_hf(bidirectional, num_buckets, max_distance):
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(-300, 301)[None]
    ref = T5Attention._relative_position_bucket(
        rel, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance
    )
    out = R.t5_relative_position_bucket(
        jnp.asarray(rel.numpy()),
        bidirectional=bidirectional,
        num_buckets=num_buckets,
        max_distance=max_distance,
    )
    np.testing.assert_array_equal(out, ref.numpy())


@pytest.mark.parametrize("n", [1, 2, 5, 8, 12, 16, 24])
def test_alibi_slopes_match_bloom(n):
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    ref = build_alibi_tensor(torch.ones(1, 2), n, torch.float32)[:, 0, 1]  # slope * position 1
    np.testing.assert_allclose(R.alibi_slopes(n), ref.numpy(), rtol=1e-6)
    if n == 8:
        np.testing.assert_allclose(R.alibi_slopes(8), [2.0**-i for i in range(1, 9)])


def _positions(shift, B=2, L=6):
    return jnp.broadcast_to(jnp.arange(L) + shift, (B, L))


def test_relative_biases_are_shift_invariant():
    p0, p1 = _positions(0), _positions(41)
    t5 = R.T5RelativeBias(num_heads=3, num_buckets=8, max_distance=16)
    params = t5.init(jax.random.key(0), p0, p0)
    np.testing.assert_array_equal(t5.apply(params, p0, p0), t5.apply(params, p1, p1))
    slopes = R.alibi_slopes(3)
    np.testing.assert_allclose(R.alibi_bias(slopes, p0, p0), R.alibi_bias(slopes, p1, p1))
    shaw = R.ShawRelativeEmbedding(head_dim=4, max_relative_position=2)
    sp = shaw.init(jax.random.key(1), p0, p0)
    for a, b in zip(shaw.apply(sp, p0, p0), shaw.apply(sp, p1, p1), strict=True):
        np.testing.assert_array_equal(a, b)


def test_t5_bias_layout_and_causal_buckets():
    p = _positions(0, B=1, L=4)
    t5 = R.T5RelativeBias(num_heads=2, bidirectional=False, num_buckets=8, max_distance=16)
    params = t5.init(jax.random.key(0), p, p)
    table = params["params"]["embedding"].unbox()
    bias = t5.apply(params, p, p)
    assert bias.shape == (1, 2, 4, 4)
    # causal buckets: query 3 attending key 1 is distance 2 -> bucket 2; the future -> bucket 0
    np.testing.assert_allclose(bias[0, :, 3, 1], table[2])
    np.testing.assert_allclose(bias[0, :, 1, 3], table[0])


def test_shaw_attention_matches_loop_reference():
    B, L, H, D, k = 1, 5, 2, 4, 2
    keys = jax.random.split(jax.random.key(3), 3)
    q, kk, v = (jax.random.normal(x, (B, L, H, D)) for x in keys)
    p = _positions(0, B=B, L=L)
    shaw = R.ShawRelativeEmbedding(head_dim=D, max_relative_position=k)
    params = shaw.init(jax.random.key(4), p, p)
    rel, w_k, w_v = shaw.apply(params, p, p)
    mask = jnp.tril(jnp.ones((L, L), bool))[None, None]
    out = R.shaw_attention(q, kk, v, rel, w_k, w_v, mask=mask)
    wk, wv = (params["params"][n].unbox() for n in ("key", "value"))
    ref = np.zeros((L, H, D))
    for h in range(H):
        for i in range(L):
            e = np.array(
                [q[0, i, h] @ (kk[0, j, h] + wk[np.clip(j - i, -k, k) + k]) for j in range(i + 1)]
            ) / math.sqrt(D)
            a = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
            ref[i, h] = sum(
                a[j] * (v[0, j, h] + wv[np.clip(j - i, -k, k) + k]) for j in range(i + 1)
            )
    np.testing.assert_allclose(out[0], ref, atol=1e-5)
