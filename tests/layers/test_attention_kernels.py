"""Kernel choice and its refusals (cuDNN's rules seen from a pretend GPU), the caller-owned kernel
record, and key padding masks turned into lengths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.layers.attention import (
    choose_kernel,
    dot_product_attention,
    kernels,
    make_mask,
    record_kernels,
    right_padding_lengths,
)

B, T, N, D = 2, 8, 2, 64


@pytest.fixture
def gpu(monkeypatch):
    monkeypatch.setattr(kernels, "_platform", lambda: "gpu")


def _q(T=T, dtype=jnp.bfloat16):
    return jnp.zeros((B, T, N, D), dtype)


def test_cudnn_takes_lengths_and_full_masks_but_refuses_a_key_only_mask(gpu):
    q = _q()
    key_mask = make_mask(T, T, causal=False, kv_mask=jnp.ones((B, T), bool))  # [B, 1, 1, S]
    seg_mask = make_mask(T, T, causal=False, q_segment_ids=jnp.ones((B, T), jnp.int32))
    assert choose_kernel("cudnn", q, q, causal=True) == ("cudnn", None)
    assert choose_kernel("cudnn", q, q, causal=False, has_lengths=True) == ("cudnn", None)
    refused = choose_kernel("cudnn", q, q, causal=False, mask=key_mask)
    assert refused.kernel == "xla" and "does not cover every query" in refused.why
    # merged with a segment mask it covers [.., T, S]: cuDNN takes it as a bias
    both = choose_kernel("cudnn", q, q, causal=False, mask=key_mask, segment_mask=seg_mask)
    assert both == ("cudnn", None)
    q7 = _q(T=7)
    assert choose_kernel("auto", q7, q7, causal=True, has_lengths=True).kernel == "cudnn"
    odd = choose_kernel("cudnn", q7, q7, causal=False, mask=make_mask(7, 7, causal=True))
    assert "odd lengths" in odd.why
    assert "dtype" in choose_kernel("cudnn", _q(dtype=jnp.float32), q, causal=True).why
    big = jnp.zeros((B, T, N, 136), jnp.bfloat16)
    assert "head_dim 136" in choose_kernel("cudnn", big, big, causal=True).why


def test_splash_refuses_lengths_and_masks_off_tpu_too(monkeypatch):
    q = _q(T=128)
    assert "not tpu" in choose_kernel("splash", q, q, causal=True).why
    monkeypatch.setattr(kernels, "_platform", lambda: "tpu")
    assert "lengths" in choose_kernel("splash", q, q, causal=True, has_lengths=True).why
    assert "multiples of 128" in choose_kernel("splash", _q(), _q(), causal=True).why


def test_record_kernels_is_owned_by_its_context():
    q = jnp.ones((B, T, N, 8))
    with record_kernels() as outer:
        dot_product_attention(q, q, q, impl="xla")
        with record_kernels() as inner:
            jax.jit(lambda q: dot_product_attention(q, q, q, impl="auto"))(q)
    dot_product_attention(q, q, q, impl="xla")  # after both contexts: recorded nowhere
    assert inner == ["xla"] and outer == ["xla", "xla"]


def test_right_padding_lengths():
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(right_padding_lengths(jnp.asarray(mask)), [3, 1, 4])
    np.testing.assert_array_equal(jax.jit(right_padding_lengths)(mask), [3, 1, 4])
    closed_over = jax.jit(lambda: right_padding_lengths(jnp.asarray(mask)))  # checked, traced
    np.testing.assert_array_equal(closed_over(), [3, 1, 4])
    bad = jnp.asarray([[1, 1, 0, 0], [0, 1, 1, 1], [1, 0, 1, 0]])
    with pytest.raises(ValueError, match=r"rows \[1, 2\] are not right padding"):
        right_padding_lengths(bad)
    with pytest.raises(ValueError, match="not right padding"):
        jax.eval_shape(lambda: right_padding_lengths(bad))
