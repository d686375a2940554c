"""The decoder LM takes every position encoding: causality, shift property, KV-cache decoding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.layers.positions import POSITIONS, PositionOptions
from jaxmodels.layers.transformer import BlockConfig
from jaxmodels.models.lm.model import DecoderLM

RELATIVE = {"none", "shaw", "t5", "alibi", "rope", "xpos"}


def _model(name, attention="softmax", **kw):
    opts = PositionOptions(name=name, max_len=32, shaw_max_distance=3, xpos_scale_base=16.0)
    block = BlockConfig(d_model=16, num_heads=2, d_ff=32, attention_impl="xla", position=opts,
                        attention=attention)  # fmt: skip
    return DecoderLM(vocab_size=40, num_layers=1, block=block, **kw)


@pytest.mark.parametrize("name", POSITIONS)
def test_decoder_causal_and_shift_property(name):
    model = _model(name)
    ids = jax.random.randint(jax.random.key(0), (1, 6), 0, 40)
    pos = jnp.arange(6)[None]
    params = model.init(jax.random.key(1), ids)["params"]
    out = model.apply({"params": params}, ids, pos)
    future = model.apply({"params": params}, ids.at[0, 4].set((ids[0, 4] + 1) % 40), pos)
    np.testing.assert_allclose(out[0, :4], future[0, :4], atol=1e-6)  # causal
    shifted = model.apply({"params": params}, ids, pos + 7)
    if name in RELATIVE:
        np.testing.assert_allclose(out, shifted, atol=2e-5)
    else:
        assert not np.allclose(out, shifted, atol=1e-3)


@pytest.mark.parametrize(
    "name,attention",
    [("learned", "softmax"), ("shaw", "softmax"), ("xpos", "softmax"), ("rope", "linear")],
)
def test_kv_cache_decoding_matches_full_forward(name, attention):
    model, dec = _model(name, attention), _model(name, attention, decode=True)
    ids = jax.random.randint(jax.random.key(0), (2, 6), 0, 40)
    params = model.init(jax.random.key(1), ids)["params"]
    full = model.apply({"params": params}, ids)
    cache = nn.unbox(dec.init(jax.random.key(1), ids)["cache"])
    cache = jax.tree.map(jnp.zeros_like, cache)
    steps = []
    for i in range(6):
        logits, upd = dec.apply({"params": params, "cache": cache}, ids[:, i : i + 1],
                                mutable=["cache"])  # fmt: skip
        cache = upd["cache"]
        steps.append(logits[:, 0])
    np.testing.assert_allclose(jnp.stack(steps, 1), full, atol=1e-5)


def test_bias_encodings_refuse_cache_decoding():
    dec = _model("alibi", decode=True)
    with pytest.raises(ValueError, match="does not support KV-cache"):
        dec.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))


def test_linear_attention_with_rope_is_causal_and_relative():
    model = _model("rope", "linear")
    ids = jax.random.randint(jax.random.key(0), (1, 6), 0, 40)
    pos = jnp.arange(6)[None]
    params = model.init(jax.random.key(1), ids)["params"]
    out = model.apply({"params": params}, ids, pos)
    future = model.apply({"params": params}, ids.at[0, 4].set((ids[0, 4] + 1) % 40), pos)
    np.testing.assert_allclose(out[0, :4], future[0, :4], atol=1e-6)
    np.testing.assert_allclose(out, model.apply({"params": params}, ids, pos + 7), atol=2e-5)
    softmax = _model("rope").apply({"params": params}, ids, pos)  # same param tree
    assert not np.allclose(out, softmax, atol=1e-3)
    with pytest.raises(ValueError, match="attention='linear' takes no logit bias"):
        _model("alibi", "linear").init(jax.random.key(1), ids)
