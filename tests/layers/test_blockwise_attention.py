"""The blockwise causal kernel equals dense causal attention (values and gradients), with GQA,
packed segments, padding, an additive bias and a ragged last block; and "auto" picks it on CPU
only where it applies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.layers import attention as A
from jaxmodels.layers.attention import kernels
from jaxmodels.layers.attention.blockwise import causal_blockwise_attention


def _qkv(B=2, T=40, N=4, K=2, H=8, seed=0):
    ks = jax.random.split(jax.random.key(seed), 3)
    return (
        jax.random.normal(ks[0], (B, T, N, H)),
        jax.random.normal(ks[1], (B, T, K, H)),
        jax.random.normal(ks[2], (B, T, K, H)),
    )


def _dense(q, k, v, mask=None, bias=None):
    T = q.shape[1]
    causal = A.make_mask(T, T, causal=True)
    mask = causal if mask is None else causal & mask
    return jax.nn.dot_product_attention(
        q, k, v, mask=mask, bias=bias, scale=0.3, implementation="xla"
    )


@pytest.mark.parametrize("block", [8, 13, 40])
def test_equals_dense_causal_attention_and_its_gradients(block):
    q, k, v = _qkv()
    B, T = q.shape[:2]
    seg = jnp.asarray(np.repeat([[0] * 15 + [1] * 25], B, 0))
    pad = jnp.arange(T)[None, :] < jnp.array([[40], [33]])
    mask = A.make_mask(T, T, causal=False, q_segment_ids=seg, kv_mask=pad)
    bias = jax.random.normal(jax.random.key(3), (1, 4, T, T))

    @jax.jit
    def blockwise(q, k, v):
        return causal_blockwise_attention(q, k, v, scale=0.3, mask=mask, bias=bias, block=block)

    @jax.jit
    def dense(q, k, v):
        return _dense(q, k, v, mask, bias)

    np.testing.assert_allclose(blockwise(q, k, v), dense(q, k, v), atol=1e-5, rtol=1e-5)
    w = jax.random.normal(jax.random.key(4), q.shape)
    grad = lambda f: jax.jit(jax.grad(lambda *a: jnp.sum(f(*a) * w), argnums=(0, 1, 2)))  # noqa: E731
    g_blk, g_den = grad(blockwise)(q, k, v), grad(dense)(q, k, v)
    for a, b in zip(g_blk, g_den, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_module_output_does_not_depend_on_the_kernel():
    x = jax.random.normal(jax.random.key(0), (2, 128, 32))
    outs = {}
    for impl in ("xla", "blockwise"):
        mha = A.MultiHeadAttention(num_heads=4, num_kv_heads=2, attention_impl=impl)
        params = mha.init(jax.random.key(1), x)
        with A.record_kernels() as log:
            outs[impl] = jax.jit(mha.apply)(params, x)
        assert log == [impl]
    np.testing.assert_allclose(outs["blockwise"], outs["xla"], atol=1e-5, rtol=1e-5)


def test_auto_picks_blockwise_on_cpu_only_where_it_applies(monkeypatch):
    q, k, _ = _qkv(T=128)
    short, _, _ = _qkv(T=64)
    kernel = lambda *a, **kw: A.choose_kernel(*a, **kw).kernel  # noqa: E731
    assert kernel("auto", q, k, causal=True) == "blockwise"
    assert kernel("auto", q, k, causal=False) == "xla"
    assert kernel("auto", short, short, causal=True) == "xla"  # one block
    assert kernel("auto", q, k[:, :64], causal=True) == "xla"  # T != S
    assert A.choose_kernel("blockwise", q, k, causal=False).why.startswith("not causal")
    monkeypatch.setattr(kernels, "_platform", lambda: "gpu")  # GPU/TPU keep their fused kernels
    assert kernel("auto", q.astype(jnp.bfloat16), k, causal=True) != "blockwise"
