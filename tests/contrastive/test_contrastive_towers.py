"""ViT / text towers: parity with HF SigLIP (random init, copied weights), properties, variants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import SiglipTextConfig, SiglipTextModel, SiglipVisionConfig, SiglipVisionModel

from jaxmodels.convert import hf_siglip
from jaxmodels.layers.text_encoder import TextTransformer, byte_tokenize
from jaxmodels.layers.vit import ViT, decode_variant, posemb_sincos_2d

W, DEPTH, MLP, HEADS = 32, 2, 64, 4


def test_vit_matches_hf_siglip_vision():
    torch.manual_seed(0)
    cfg = SiglipVisionConfig(
        hidden_size=W,
        intermediate_size=MLP,
        num_hidden_layers=DEPTH,
        num_attention_heads=HEADS,
        image_size=16,
        patch_size=4,
    )
    hf = SiglipVisionModel(cfg).eval()
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 16, 16, 3)).astype(np.float32)
    with torch.no_grad():
        want = hf(pixel_values=torch.tensor(x.transpose(0, 3, 1, 2))).pooler_output.numpy()
    vit = ViT(W, DEPTH, MLP, HEADS, patch_size=4, pool="map", posemb="learn")
    params = hf_siglip.vision_params(hf.state_dict(), DEPTH, HEADS)
    got = vit.apply({"params": params}, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_text_matches_hf_siglip_text():
    torch.manual_seed(0)
    cfg = SiglipTextConfig(
        vocab_size=257,
        hidden_size=W,
        intermediate_size=MLP,
        num_hidden_layers=DEPTH,
        num_attention_heads=HEADS,
        max_position_embeddings=12,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
    )
    hf = SiglipTextModel(cfg).eval()
    tokens = np.random.default_rng(0).integers(1, 257, size=(2, 12))
    with torch.no_grad():
        want = hf(input_ids=torch.tensor(tokens)).last_hidden_state[:, -1].numpy()
    txt = TextTransformer(257, W, DEPTH, MLP, HEADS, max_len=12, pool="last")
    params = hf_siglip.text_params(hf.state_dict(), DEPTH, HEADS)
    np.testing.assert_allclose(txt.apply({"params": params}, tokens), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pool,causal", [("mean", False), ("last", True)])
def test_text_ignores_padding(pool, causal):
    """Whatever sits in padded positions (ids masked as keys) cannot change the pooled output."""
    txt = TextTransformer(257, 16, 1, 32, 2, max_len=10, pool=pool, causal=causal)
    tokens = byte_tokenize(["a red circle", "hi"], 10)
    params = txt.init(jax.random.key(0), tokens)
    longer = byte_tokenize(["a red circle", "hi"], 8)  # different length, same content
    a = txt.apply(params, tokens)
    np.testing.assert_allclose(a[1], txt.apply(params, longer)[1], rtol=1e-5, atol=1e-6)
    assert np.isfinite(a).all()


@pytest.mark.parametrize("pool,scan", [("map", True), ("gap", False), ("cls", False)])
def test_vit_pools_and_scan(pool, scan):
    vit = ViT(
        16,
        2,
        32,
        2,
        patch_size=4,
        pool=pool,
        scan_layers=scan,
        posemb="sincos2d",
        remat_policy="full" if scan else "none",
    )
    x = jnp.ones((3, 8, 8, 3))
    params = vit.init(jax.random.key(0), x)
    out = jax.jit(vit.apply)(params, x)
    assert out.shape == (3, 16) and np.isfinite(out).all()


def test_variants_and_sincos():
    assert decode_variant("B/16") == dict(
        width=768, depth=12, mlp_dim=3072, num_heads=12, patch_size=16
    )
    assert decode_variant("So400m/14")["mlp_dim"] == 4304
    with pytest.raises(ValueError, match="unknown size 'XL'"):
        decode_variant("XL/16")
    pe = posemb_sincos_2d(4, 4, 8)[0]
    assert pe.shape == (16, 8)
    # the first frequency is 1: channel 0 is sin(x), channel 4 sin(y) of the grid position
    np.testing.assert_allclose(pe[5, 0], np.sin(1.0), rtol=1e-6)
    np.testing.assert_allclose(pe[4, 4], np.sin(1.0), rtol=1e-6)
