"""Shared transformer layers: shapes, masks, GQA, scan-vs-unrolled, KV cache."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.layers.attention import (
    AttentionInputs,
    MultiHeadAttention,
    choose_kernel,
    dot_product_attention,
)
from jaxmodels.layers.mlp import MLP
from jaxmodels.layers.norms import LayerNorm, RMSNorm
from jaxmodels.layers.transformer import BlockConfig, TransformerBlock, TransformerStack

B, L, E = 2, 8, 32
CFG = BlockConfig(d_model=E, num_heads=4, num_kv_heads=2, d_ff=48)


def _x(seed=0, shape=(B, L, E)):
    return jax.random.normal(jax.random.key(seed), shape)


def test_norms_closed_form():
    x = np.asarray(_x())
    p = RMSNorm().init(jax.random.key(0), x)
    want = x / np.sqrt(np.mean(x**2, -1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(RMSNorm().apply(p, x), want, rtol=1e-5, atol=1e-5)
    p = LayerNorm().init(jax.random.key(0), x)
    want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(LayerNorm().apply(p, x), want, rtol=1e-4, atol=1e-4)
    assert nn.get_partition_spec(p)["params"]["scale"] is not None


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("activation", ["swiglu", "gelu"])
def test_mlp_shapes(activation, jit):
    x = _x()
    mlp = MLP(64, activation=activation, dtype=jnp.bfloat16)
    p = mlp.init(jax.random.key(1), x)
    y = (jax.jit(mlp.apply) if jit else mlp.apply)(p, x)
    chex.assert_shape(y, x.shape)
    assert y.dtype == jnp.bfloat16 and p["params"]["up"]["kernel"].value.dtype == jnp.float32
    chex.assert_tree_all_finite(y)


class TestVariants(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_block(self):
        x = _x()
        for cfg in (CFG, BlockConfig(E, 4, 48, norm="layernorm", norm_position="post")):
            block = TransformerBlock(cfg)
            p = block.init(jax.random.key(1), x)
            y = self.variant(block.apply)(p, x)
            chex.assert_shape(y, x.shape)
            chex.assert_tree_all_finite(y)


def _stack_apply(cfg=CFG, scan=False, **kw):
    m = TransformerStack(cfg, num_layers=2, scan_layers=scan)
    p = m.init(jax.random.key(1), _x())
    return m, p, jax.jit(lambda p, x: m.apply(p, x, **kw))


def test_causality():
    m, p, f = _stack_apply()
    x = _x()
    x2 = x.at[:, 5:].set(_x(7)[:, 5:])
    y, y2 = f(p, x), f(p, x2)
    np.testing.assert_allclose(y[:, :5], y2[:, :5], atol=1e-5)
    assert not np.allclose(y[:, 5:], y2[:, 5:], atol=1e-3)


@pytest.mark.parametrize("causal", [True, False])
def test_packing_isolates_documents(causal):
    """A document's output in a packed row equals its output alone (RoPE positions reset)."""
    cfg = BlockConfig(E, 4, 48, causal=causal)
    m = TransformerStack(cfg, num_layers=2)
    x = _x()
    p = m.init(jax.random.key(1), x)
    seg = jnp.array([[1, 1, 1, 2, 2, 2, 2, 2]] * B)
    pos = jnp.array([[0, 1, 2, 0, 1, 2, 3, 4]] * B)
    packed = m.apply(p, x, AttentionInputs(positions_BxL=pos, segment_ids_BxL=seg))
    alone_a = m.apply(p, x[:, :3])
    alone_b = m.apply(p, x[:, 3:])
    np.testing.assert_allclose(packed[:, :3], alone_a, atol=1e-5)
    np.testing.assert_allclose(packed[:, 3:], alone_b, atol=1e-5)


def test_kv_mask_ignores_padding():
    m, p, f = _stack_apply(BlockConfig(E, 4, 48, causal=False))
    x = _x()
    keep = jnp.array([[1] * 6 + [0] * 2] * B)
    y = m.apply(p, x, AttentionInputs(kv_mask_BxL=keep))
    y2 = m.apply(p, x.at[:, 6:].set(9.0), AttentionInputs(kv_mask_BxL=keep))
    np.testing.assert_allclose(y[:, :6], y2[:, :6], atol=1e-5)


def test_gqa_equals_mha_with_repeated_kv_heads():
    x = _x()
    gqa = MultiHeadAttention(num_heads=4, num_kv_heads=2)
    mha = MultiHeadAttention(num_heads=4)
    p = nn.unbox(gqa.init(jax.random.key(1), x))
    rep = jax.tree.map(lambda w: jnp.repeat(w, 2, axis=1), p["params"]["key"])
    p_mha = {"params": dict(p["params"])}
    p_mha["params"]["key"] = rep
    p_mha["params"]["value"] = jax.tree.map(
        lambda w: jnp.repeat(w, 2, axis=1), p["params"]["value"]
    )
    np.testing.assert_allclose(gqa.apply(p, x), mha.apply(p_mha, x), atol=1e-5)


def test_scan_equals_unrolled():
    x = _x()
    scan = TransformerStack(CFG, num_layers=2, scan_layers=True, remat_policy="dots_saveable")
    unrolled = TransformerStack(CFG, num_layers=2)
    p = nn.unbox(scan.init(jax.random.key(1), x))["params"]
    assert jax.tree.leaves(p["layers"])[0].shape[0] == 2
    p_un = {"final_norm": p["final_norm"]}
    for i in range(2):
        p_un[f"layers_{i}"] = jax.tree.map(lambda w, i=i: w[i], p["layers"])
    y_scan = jax.jit(scan.apply)({"params": p}, x)
    y_un = unrolled.apply({"params": p_un}, x)
    np.testing.assert_allclose(y_scan, y_un, atol=1e-5)
    g = jax.grad(lambda p: scan.apply({"params": p}, x).sum())(p)
    chex.assert_tree_all_finite(g)


def test_kv_cache_matches_full_forward(scan=True):
    x = _x(shape=(B, 10, E))
    full = TransformerStack(CFG, num_layers=2, scan_layers=scan)
    dec = TransformerStack(CFG, num_layers=2, scan_layers=scan, decode=True)
    params = full.init(jax.random.key(1), x)["params"]
    want = full.apply({"params": params}, x)
    cache = dec.init(jax.random.key(1), x)["cache"]
    step = jax.jit(lambda c, xt: dec.apply({"params": params, "cache": c}, xt, mutable=["cache"]))
    y, upd = step(cache, x[:, :4])  # prefill 4 tokens, then one at a time
    outs = [y]
    cache = upd["cache"]
    for t in range(4, 10):
        y, upd = step(cache, x[:, t : t + 1])
        cache = upd["cache"]
        outs.append(y)
    np.testing.assert_allclose(jnp.concatenate(outs, 1), want, atol=2e-5)


@pytest.mark.parametrize("scan", [True, False])
def test_cross_attention_cache_projects_the_encoded_sequence_once(scan):
    cfg = BlockConfig(d_model=E, num_heads=4, num_kv_heads=2, d_ff=48, cross_attention=True)
    x, enc = _x(shape=(B, 10, E)), _x(7, shape=(B, 5, E))
    enc_mask = jnp.arange(5)[None] < jnp.array([[5], [3]])  # row 1 pads its last two
    full = TransformerStack(cfg, num_layers=2, scan_layers=scan)
    dec = TransformerStack(cfg, num_layers=2, scan_layers=scan, decode=True)
    inputs = AttentionInputs(encoded_BxSxE=enc, encoded_mask_BxS=enc_mask)
    params = full.init(jax.random.key(1), x, inputs)["params"]
    want = full.apply({"params": params}, x, inputs)
    cache = dec.init(jax.random.key(1), x, inputs)["cache"]

    @jax.jit
    def step(c, xt, e):
        variables = {"params": params, "cache": c}
        inputs = AttentionInputs(encoded_BxSxE=e, encoded_mask_BxS=enc_mask)
        return dec.apply(variables, xt, inputs, mutable=["cache"])

    y, upd = step(cache, x[:, :4], enc)  # the prefill projects enc; the steps never see it
    outs, cache = [y], upd["cache"]
    for t in range(4, 10):
        y, upd = step(cache, x[:, t : t + 1], None)
        cache = upd["cache"]
        outs.append(y)
    np.testing.assert_allclose(jnp.concatenate(outs, 1), want, atol=2e-5)
    with pytest.raises(ValueError, match="needs inputs.encoded_BxSxE"):
        full.apply({"params": params}, x)


def test_impl_resolution_on_cpu():
    q = jnp.zeros((1, 128, 2, 64), jnp.bfloat16)
    assert choose_kernel("auto", q, q, causal=True) == ("blockwise", None)
    assert choose_kernel("auto", q, q, causal=False).kernel == "xla"
    assert choose_kernel("cudnn", q, q, causal=True) == ("xla", "backend is 'cpu', not gpu")
    assert choose_kernel("splash", q, q, causal=True) == ("xla", "backend is 'cpu', not tpu")
    with pytest.raises(ValueError, match="attention_impl"):
        choose_kernel("flash", q, q, causal=True)


def test_bias_hook_matches_reference():
    q, k, v = (_x(i, (B, L, 4, 8)) for i in range(3))
    bias = _x(5, (1, 4, L, L))
    out = dot_product_attention(q, k, v, causal=True, bias=bias, impl="xla")
    logits = jnp.einsum("bthd,bshd->bhts", q, k) / np.sqrt(8) + bias
    logits = jnp.where(jnp.tril(jnp.ones((L, L), bool)), logits, -jnp.inf)
    want = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(logits, -1), v)
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_splash_wrapper_shards_batch_and_heads():
    """The splash path's shard_map wiring, with the XLA kernel standing in for Pallas."""
    from jaxmodels.config import DEFAULT_RULES
    from jaxmodels.layers.attention.splash import splash_attention
    from jaxmodels.parallel import mesh as mesh_lib

    seen = []

    def local(q, k, v, qs, ks, *, causal, scale):
        seen.append(q.shape)
        return dot_product_attention(q / scale * scale, k, v, causal=causal, q_segment_ids=qs,
                                     kv_segment_ids=ks, impl="xla", scale=scale)  # fmt: skip

    q, k, v = (_x(i, (4, L, 4, 8)) for i in range(3))
    seg = jnp.array([[1] * 5 + [2] * 3] * 4)
    want = dot_product_attention(q, k, v, causal=True, q_segment_ids=seg, impl="xla")
    mesh = mesh_lib.make_mesh({"data": 4, "fsdp": 1, "tensor": 2}, jax.devices()[:8])
    fn = lambda q, k, v, s: splash_attention(
        q, k, v, causal=True, q_segment_ids=s, kv_segment_ids=None, scale=1 / np.sqrt(8),
        local=local,
    )  # fmt: skip
    with jax.set_mesh(mesh), nn.logical_axis_rules(DEFAULT_RULES):
        got = jax.jit(fn)(q, k, v, seg)
    assert seen == [(1, L, 2, 8)]  # per shard: batch 4/4, heads 4/2
    np.testing.assert_allclose(got, want, atol=1e-5)
