"""Fused q/k/v and gate/up projections (``BlockConfig.fused_projections``): the same function
as separate projections given the same weights, an exact layout round trip, an initialisation
of the same distribution, and kernels that tensor parallelism splits by whole head groups."""

import dataclasses

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.config import DEFAULT_RULES, base_config
from jaxmodels.layers.attention.module import fuse_qkv, split_qkv
from jaxmodels.layers.transformer import (
    BlockConfig,
    TransformerStack,
    fuse_projections,
    split_projections,
)
from jaxmodels.train import optim

B, L, E = 2, 8, 32
# GQA (8 query heads in 2 groups of 4), q/k/v biases (Qwen2): the layout's hardest case
GQA = BlockConfig(d_model=E, num_heads=8, num_kv_heads=2, d_ff=48, qkv_bias=True)
CONFIGS = {
    "gqa_swiglu_qkv_bias": GQA,
    "mha_geglu_biases": BlockConfig(E, 4, 48, activation="geglu", use_bias=True),
    "mqa_gelu": BlockConfig(E, 4, 48, num_kv_heads=1, activation="gelu"),  # no gate to fuse
}


def _stacks(cfg, scan):
    kw = dict(num_layers=2, scan_layers=scan)
    fused = dataclasses.replace(cfg, fused_projections=True)
    return TransformerStack(cfg, **kw), TransformerStack(fused, **kw)


@pytest.mark.parametrize(
    "name,scan", [(name, False) for name in sorted(CONFIGS)] + [("gqa_swiglu_qkv_bias", True)]
)
def test_fused_equals_separate_given_the_same_weights(name, scan, variant):
    separate, fused = _stacks(CONFIGS[name], scan)
    x = jax.random.normal(jax.random.key(0), (B, L, E))
    params = nn.unbox(separate.init(jax.random.key(1), x)["params"])
    # random biases too, so a misplaced bias row shows
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    params = jax.tree.unflatten(
        tree, [a + 0.1 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys, strict=True)]
    )
    fused_params = fuse_projections(params)
    want_shapes = jax.eval_shape(lambda: nn.unbox(fused.init(jax.random.key(1), x)["params"]))
    chex.assert_trees_all_equal_shapes(fused_params, want_shapes)
    want = variant(separate.apply)({"params": params}, x)
    got = variant(fused.apply)({"params": fused_params}, x)
    # float32 round-off only: the fused matmuls sum in another order (a few 1e-6 after 2 layers)
    chex.assert_trees_all_close(got, want, atol=1e-5, rtol=1e-5)
    chex.assert_trees_all_equal(split_projections(fused_params), params)


def test_weight_decay_reaches_the_same_weights_fused_or_not():
    """AdamW decays kernels, never biases: a fused bias ([K, G + 2, D], [2, F]) is no matrix."""
    t = base_config().train
    t.update(weight_decay=0.1, grad_clip=0.0, warmup_steps=0)
    tx = optim.make_optimizer(t)
    cfg = CONFIGS["mha_geglu_biases"]
    params = nn.unbox(TransformerStack(cfg, 1).init(jax.random.key(0), jnp.zeros((1, 2, E))))
    decayed = {}
    for fused, p in (("no", params["params"]), ("yes", fuse_projections(params["params"]))):
        zeros = jax.tree.map(jnp.zeros_like, p)
        updates, _ = tx.update(zeros, tx.init(p), p)  # zero gradients: only the decay moves
        decayed[fused] = jax.tree.map(lambda u: u != 0, updates)
    moved = lambda tree: jax.tree.map(lambda d: bool(d.any()), tree)  # noqa: E731
    assert moved(split_projections(decayed["yes"])) == moved(decayed["no"])
    layer = moved(decayed["no"])["layers_0"]
    assert layer["attention"]["query"] == {"kernel": True, "bias": False}


def test_fused_layout_groups_queries_with_their_key_value_head():
    N, K, D = 6, 2, 3
    q = jnp.arange(N * D).reshape(N, D)
    k, v = 100 + jnp.arange(K * D).reshape(K, D), 200 + jnp.arange(K * D).reshape(K, D)
    qkv = fuse_qkv(q, k, v)
    chex.assert_shape(qkv, (K, N // K + 2, D))
    chex.assert_trees_all_equal(qkv[1, :3], q[3:])  # kv head 1 serves query heads 3, 4, 5
    chex.assert_trees_all_equal((qkv[1, 3], qkv[1, 4]), (k[1], v[1]))
    chex.assert_trees_all_equal(split_qkv(qkv), (q, k, v))


def test_fused_init_draws_each_projection_as_unfused():
    """xavier_uniform of the separate [E, N D], [E, K D] and [E, F] matrices: each piece of the
    fused kernels spans its own bound (a fused fan-out would shrink the query bound)."""
    stack = TransformerStack(dataclasses.replace(GQA, d_model=256, fused_projections=True), 1)
    p = nn.unbox(stack.init(jax.random.key(0), jnp.zeros((1, 2, 256)))["params"]["layers_0"])
    q, k, v = split_qkv(p["attention"]["qkv"]["kernel"])
    gate_up = p["mlp"]["gate_up"]["kernel"]
    for piece, fan_out in ((q, 8 * 32), (k, 2 * 32), (v, 2 * 32), (gate_up[:, 0], 48)):
        bound = np.sqrt(6 / (256 + fan_out))
        assert 0.9 * bound < float(jnp.abs(piece).max()) <= bound
    assert not np.allclose(k, v)


def test_fused_kernels_shard_by_head_groups_and_hidden_units():
    stack = TransformerStack(dataclasses.replace(GQA, fused_projections=True), 1)
    boxed = jax.eval_shape(stack.init, jax.random.key(0), jnp.zeros((1, 2, E)))["params"]
    specs = nn.get_partition_spec(boxed)["layers_0"]
    with nn.logical_axis_rules(DEFAULT_RULES):
        mesh_axes = nn.logical_to_mesh_axes
        qkv = mesh_axes(specs["attention"]["qkv"]["kernel"])
        gate_up = mesh_axes(specs["mlp"]["gate_up"]["kernel"])
    assert tuple(qkv) == ("fsdp", "tensor", None, None)  # [E, K, G + 2, D]: whole groups
    assert tuple(gate_up) == ("fsdp", None, "tensor")  # [E, 2, F]: gate and up of a unit
