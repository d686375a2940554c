"""Selecting encodings by name: options, the q/k rotation hook and the model-level modules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.layers.positions import (
    AbsolutePositions,
    PositionOptions,
    RelativePositionBias,
    rotate_qk,
)
from jaxmodels.layers.positions.rope_scaling import scaled_rope_inv_freq
from jaxmodels.layers.positions.rotary import apply_rope


def test_options_validate_and_parse():
    with pytest.raises(ValueError, match="position='bogus'"):
        PositionOptions(name="bogus")
    with pytest.raises(ValueError, match="unknown position option"):
        PositionOptions.from_config({"name": "rope", "rope_bsae": 10.0})
    with pytest.raises(ValueError, match="rope_scaling type"):
        PositionOptions.from_config({"name": "rope", "rope_scaling": {"type": "nope"}})
    o = PositionOptions.from_config(
        {"name": "rope", "rope_scaling": {"type": "linear", "factor": 2}}
    )
    assert dict(o.rope_scaling) == {"type": "linear", "factor": 2}
    hash(o)  # linen modules hold it as a field
    assert o.with_scaling(None).rope_scaling == ()
    assert o.rotary and PositionOptions(name="xpos").rotary
    assert not any(PositionOptions(name=n).rotary for n in ("none", "t5", "shaw", "alibi"))


def test_rotate_qk_yarn_scales_logits_by_attention_factor_squared():
    ks = jax.random.split(jax.random.key(0))
    q, k = (jax.random.normal(x, (1, 5, 2, 8)) for x in ks)
    pos = jnp.arange(5)[None]
    scaling = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}
    rq, rk = rotate_qk(q, k, pos, PositionOptions().with_scaling(scaling))
    inv, att = scaled_rope_inv_freq(8, 10000.0, scaling)
    ref = jnp.einsum("bqhd,bkhd->bhqk", apply_rope(q, pos, inv), apply_rope(k, pos, inv))
    got = jnp.einsum("bqhd,bkhd->bhqk", rq, rk)
    np.testing.assert_allclose(got, ref * att**2, rtol=1e-5, atol=1e-5)
    assert att > 1.0


def test_absolute_and_bias_modules_by_name():
    pos = jnp.broadcast_to(jnp.arange(6), (2, 6))
    for name, absolute, bias in [
        ("none", False, False),
        ("rope", False, False),
        ("learned", True, False),
        ("sinusoidal", True, False),
        ("t5", False, True),
        ("alibi", False, True),
    ]:
        o = PositionOptions(name=name, max_len=16)
        a = AbsolutePositions(o, 8)
        b = RelativePositionBias(o, num_heads=4, causal=True)
        av = a.init(jax.random.key(0), pos)
        bv = b.init(jax.random.key(0), pos, pos)
        out_a, out_b = a.apply(av, pos), b.apply(bv, pos, pos)
        assert (out_a is not None) == absolute, name
        assert (out_b is not None) == bias, name
        if absolute:
            assert out_a.shape == (2, 6, 8)
        if bias:
            assert out_b.shape == (2, 4, 6, 6)
