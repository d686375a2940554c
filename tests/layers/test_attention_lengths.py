"""Key padding given as sequence lengths equals the same padding given as a boolean key mask."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.layers.attention import AttentionInputs, MultiHeadAttention, dot_product_attention
from jaxmodels.layers.positions import NOPE, PositionOptions
from jaxmodels.layers.transformer import BlockConfig, TransformerStack

LENGTHS = np.array([5, 1, 8], np.int32)  # per row; the rows are 8 long


def _keep(lengths, S):
    return jnp.arange(S)[None, :] < jnp.asarray(lengths)[:, None]


@pytest.mark.parametrize("L", [8, 160])  # 160, causal: the CPU's blockwise kernel (3 blocks)
@pytest.mark.parametrize("causal", [False, True])
def test_kernel_lengths_equal_mask(causal, L):
    """Right padding as lengths gives the mask's output exactly (the CPU kernels build the
    same mask from the lengths), and keys past the length are never read."""
    rng = np.random.default_rng(0)
    lengths = LENGTHS * L // 8
    q = rng.normal(size=(3, L, 4, 8)).astype(np.float32)
    k, v = rng.normal(size=(2, 3, L, 2, 8)).astype(np.float32)  # 2 kv heads (GQA)
    want = dot_product_attention(q, k, v, causal=causal, mask=_keep(lengths, L)[:, None, None])
    got = dot_product_attention(q, k, v, causal=causal, kv_lengths_B=lengths)
    np.testing.assert_array_equal(got, want)
    # keys past the length are ignored: changing them changes nothing
    k2 = np.where(_keep(lengths, L)[..., None, None], k, 9.0)
    got2 = dot_product_attention(q, k2, v, causal=causal, kv_lengths_B=lengths)
    np.testing.assert_array_equal(got2, got)


@pytest.mark.parametrize("scan,position,attention,causal", [
    (False, NOPE, "softmax", False), (True, NOPE, "softmax", False),
    (False, NOPE, "softmax", True),  # BLIP's decoder: causal self-attention + right padding
    (False, PositionOptions(name="shaw", shaw_max_distance=4), "softmax", False),
    (False, PositionOptions(name="rope"), "linear", False),
])  # fmt: skip
def test_stack_lengths_equal_mask(scan, position, attention, causal):
    """Through the block stack, and the Shaw and linear paths that fold lengths into a mask."""
    cfg = BlockConfig(16, 2, 32, position=position, attention=attention, causal=causal)
    stack = TransformerStack(cfg, 2, scan_layers=scan)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 8, 16)), jnp.float32)
    params = stack.init(jax.random.key(0), x)
    want = stack.apply(params, x, AttentionInputs(kv_mask_BxL=_keep(LENGTHS, 8)))
    got = stack.apply(params, x, AttentionInputs(kv_lengths_B=LENGTHS))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_decode_cache_folds_lengths_into_mask():
    attn = MultiHeadAttention(2, causal=True, position=NOPE, decode=True)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 8, 16)), jnp.float32)
    variables = attn.init(jax.random.key(0), x)
    params, cache = {"params": variables["params"]}, {"cache": variables["cache"]}
    as_mask = AttentionInputs(kv_mask_BxL=_keep(LENGTHS, 8))
    as_lengths = AttentionInputs(kv_lengths_B=LENGTHS)
    outs = [
        attn.apply({**params, **cache}, x[:, :4], inputs, mutable=["cache"])[0]
        for inputs in (as_mask, as_lengths)
    ]
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-6, atol=1e-6)
