"""Absolute encodings, RoPE/xPos properties and RoPE scalings against HF ``ROPE_INIT_FUNCTIONS``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.layers.positions import absolute as A
from jaxmodels.layers.positions import rope_scaling as S
from jaxmodels.layers.positions import rotary as P


def _qk(key, B=2, L=7, H=3, D=16):
    kq, kk = jax.random.split(key)
    return jax.random.normal(kq, (B, L, H, D)), jax.random.normal(kk, (B, L, H, D))


def _scores(q, k):
    return jnp.einsum("bqhd,bkhd->bhqk", q, k)


def test_sinusoidal_matches_vaswani_formula():
    pe = A.sinusoidal_embedding(jnp.arange(5), 8)
    pos, i = np.arange(5)[:, None], np.arange(4)[None]
    ref = np.zeros((5, 8))
    ref[:, 0::2] = np.sin(pos / 10000 ** (2 * i / 8))
    ref[:, 1::2] = np.cos(pos / 10000 ** (2 * i / 8))
    np.testing.assert_allclose(pe, ref, atol=1e-5)


def test_learned_embedding_shape_and_lookup():
    m = A.LearnedPositionEmbedding(num_positions=10, features=4)
    pos = jnp.array([[0, 3, 9]])
    params = m.init(jax.random.key(0), pos)
    out = m.apply(params, pos)
    table = params["params"]["embedding"].unbox()
    np.testing.assert_allclose(out[0], table[jnp.array([0, 3, 9])])


@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize("rotary_dim", [16, 8])
def test_rope_scores_invariant_to_position_shift(layout, rotary_dim):
    q, k = _qk(jax.random.key(1))
    pos = jnp.broadcast_to(jnp.arange(7), (2, 7))
    f = S.rope_inv_freq(rotary_dim, 500.0)
    s0 = _scores(P.apply_rope(q, pos, f, layout=layout), P.apply_rope(k, pos, f, layout=layout))
    s1 = _scores(
        P.apply_rope(q, pos + 37, f, layout=layout), P.apply_rope(k, pos + 37, f, layout=layout)
    )
    np.testing.assert_allclose(s0, s1, atol=1e-4)
    assert not np.allclose(s0, _scores(q, k), atol=1e-3)  # the rotation does something


def test_rope_layouts_agree_up_to_feature_permutation():
    q, _ = _qk(jax.random.key(2))
    pos = jnp.broadcast_to(jnp.arange(7), (2, 7))
    f = S.rope_inv_freq(16)
    perm = np.concatenate([np.arange(0, 16, 2), np.arange(1, 16, 2)])  # interleaved -> half
    a = P.apply_rope(q, pos, f, layout="interleaved")[..., perm]
    b = P.apply_rope(q[..., perm], pos, f, layout="half")
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_xpos_scores_depend_on_offset_only_and_decay():
    q, k = _qk(jax.random.key(3))
    pos = jnp.broadcast_to(jnp.arange(7), (2, 7))
    f = S.rope_inv_freq(16)
    s0 = _scores(*P.apply_xpos(q, k, pos, pos, f, scale_base=8.0))
    s1 = _scores(*P.apply_xpos(q, k, pos + 50, pos + 50, f, scale_base=8.0))
    np.testing.assert_allclose(s0, s1, rtol=1e-4, atol=1e-4)
    # all-ones q, k, no rotation: the score is 2 sum_i zeta_i^((n-m)/s), decaying with n - m
    ones = jnp.ones((1, 4, 1, 16))
    qx, kx = P.apply_xpos(ones, ones, pos[:1, :4], pos[:1, :4], jnp.zeros(8), scale_base=1.0)
    s = _scores(qx, kx)[0, 0]
    zeta = np.asarray(P.xpos_zeta(16))
    np.testing.assert_allclose(s[3, 0], 2 * np.sum(zeta**3.0), rtol=1e-5)  # q at 3, k at 0: decays
    np.testing.assert_allclose(s[0, 3], 2 * np.sum(zeta**-3.0), rtol=1e-5)
    assert s[3, 0] < s[2, 0] < s[1, 0] < s[0, 0]


def _hf(rope_type, dim=64, **params):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    cfg = LlamaConfig(
        hidden_size=dim * 2,
        num_attention_heads=2,
        max_position_embeddings=params.pop("max_position_embeddings", 4096),
        rope_parameters={"rope_type": rope_type, "rope_theta": 10000.0, **params},
    )
    seq_len = params.get("seq_len")
    kw = {"seq_len": seq_len} if seq_len else {}
    inv, att = ROPE_INIT_FUNCTIONS[rope_type](cfg, "cpu", **kw)
    return inv.numpy(), att


@pytest.mark.parametrize(
    "scaling,hf_type,hf_params",
    [
        ({"type": "linear", "factor": 4.0}, "linear", {"factor": 4.0}),
        (
            {"type": "yarn", "factor": 8.0, "original_max_position_embeddings": 512},
            "yarn",
            {"factor": 8.0, "original_max_position_embeddings": 512},
        ),
        (
            {
                "type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 1024,
                "beta_fast": 16.0,
                "beta_slow": 2.0,
            },
            "yarn",
            {
                "factor": 4.0,
                "original_max_position_embeddings": 1024,
                "beta_fast": 16.0,
                "beta_slow": 2.0,
            },
        ),
        (
            {
                "type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 512,
            },
            "llama3",
            {
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 512,
            },
        ),
    ],
)
def test_scaled_frequencies_match_hf(scaling, hf_type, hf_params):
    ref, ref_att = _hf(hf_type, **hf_params)
    inv, att = S.scaled_rope_inv_freq(64, 10000.0, scaling)
    np.testing.assert_allclose(inv, ref, rtol=1e-5)
    assert att == pytest.approx(ref_att)
    assert not np.allclose(inv, S.rope_inv_freq(64))


def test_dynamic_and_static_ntk_match_hf():
    ref, _ = _hf("dynamic", factor=4.0, max_position_embeddings=1024)
    np.testing.assert_allclose(
        S.dynamic_ntk_inv_freq(64, 1e4, factor=4.0, seq_len=6000, max_position_embeddings=1024),
        _hf_dynamic(6000),
        rtol=1e-5,
    )
    np.testing.assert_allclose(  # below the training length dynamic NTK is plain RoPE
        S.dynamic_ntk_inv_freq(64, 1e4, factor=4.0, seq_len=100, max_position_embeddings=1024),
        ref,
        rtol=1e-5,
    )
    # static NTK-aware = dynamic at the length where s*L/L0 - (s-1) = s, i.e. L = L0 (2s-1)/s
    inv, _ = S.scaled_rope_inv_freq(64, 1e4, {"type": "ntk", "factor": 4.0})
    np.testing.assert_allclose(inv, _hf_dynamic(1024 * 7 // 4), rtol=1e-5)
    # NTK keeps the highest frequency and divides the lowest by ~s (the point of the method)
    base = S.rope_inv_freq(64)
    assert inv[0] == pytest.approx(base[0])
    assert base[-1] / inv[-1] == pytest.approx(4.0 ** (62 / 62), rel=1e-4)


def _hf_dynamic(seq_len):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    cfg = LlamaConfig(
        hidden_size=128,
        num_attention_heads=2,
        max_position_embeddings=1024,
        rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 4.0},
    )
    return ROPE_INIT_FUNCTIONS["dynamic"](cfg, "cpu", seq_len=seq_len)[0].numpy()


def test_partial_rotary_leaves_tail_untouched():
    q, _ = _qk(jax.random.key(4))
    pos = jnp.broadcast_to(jnp.arange(7), (2, 7))
    out = P.apply_rope(q, pos, S.rope_inv_freq(8))
    np.testing.assert_array_equal(out[..., 8:], q[..., 8:])


def test_scaling_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown"):
        S.scaled_rope_inv_freq(64, 1e4, {"type": "bogus"})
    with pytest.raises(ValueError, match="linear"):
        S.scaled_rope_inv_freq(64, 1e4, {"type": "linear", "factr": 2.0})
