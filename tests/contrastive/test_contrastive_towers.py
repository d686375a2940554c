"""ViT / text towers: parity with HF SigLIP (random init, copied weights), properties, variants."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import SiglipTextConfig, SiglipTextModel, SiglipVisionConfig, SiglipVisionModel

from jaxmodels.config import load_config
from jaxmodels.data.tokenizers import ByteTokenizer
from jaxmodels.layers.text_encoder import TextTransformer
from jaxmodels.layers.vit import ViT, decode_variant, posemb_sincos_2d
from jaxmodels.models.contrastive import hf as hf_siglip
from jaxmodels.models.contrastive import model as contrastive_model

W, DEPTH, MLP, HEADS = 32, 2, 64, 4
# Against HF in PyTorch: float32 on both sides, summed in another order through 2 blocks,
# so 1e-4 relative / 1e-5 absolute; tests of one program against itself use 1e-5 / 1e-6.


def test_vit_matches_hf_siglip_vision(variant):
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
    got = variant(vit.apply)({"params": params}, x)
    chex.assert_trees_all_close(got, want, atol=1e-5, rtol=1e-4)


def test_text_matches_hf_siglip_text(variant):
    torch.manual_seed(0)
    cfg = SiglipTextConfig(
        vocab_size=259,
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
    tokens = np.random.default_rng(0).integers(0, 259, size=(2, 12))
    with torch.no_grad():
        want = hf(input_ids=torch.tensor(tokens)).last_hidden_state[:, -1].numpy()
    txt = TextTransformer(259, W, DEPTH, MLP, HEADS, max_len=12, pool="last")
    params = hf_siglip.text_params(hf.state_dict(), DEPTH, HEADS)
    chex.assert_trees_all_close(
        variant(txt.apply)({"params": params}, tokens), want, atol=1e-5, rtol=1e-4
    )
    # SigLIP's fixed-length texts: padding attended and the final position pooled, whatever the
    # lengths say (mask_padding=False)
    fixed = TextTransformer(259, W, DEPTH, MLP, HEADS, max_len=12, pool="last", mask_padding=False)
    got = variant(fixed.apply)({"params": params}, tokens, np.array([5, 12]))
    chex.assert_trees_all_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("pool,causal", [("mean", False), ("last", True)])
def test_text_ignores_padding(pool, causal, variant):
    """Whatever sits after a row's length cannot change its pooled output."""
    txt = TextTransformer(259, 16, 1, 32, 2, max_len=10, pool=pool, causal=causal)
    tokens, lengths = ByteTokenizer().encode_batch(["a red circle", "hi"], 10)
    params = txt.init(jax.random.key(0), tokens, lengths)
    apply = variant(txt.apply)
    a = apply(params, tokens, lengths)
    junk = np.where(np.arange(10) < lengths[:, None], tokens, 7)  # other ids after the text
    chex.assert_trees_all_close(a, apply(params, junk, lengths), atol=1e-6, rtol=1e-5)
    shorter, n = ByteTokenizer().encode_batch(["a red circle", "hi"], 8)  # same text, L = 8
    chex.assert_trees_all_close(a[1], apply(params, shorter, n)[1], atol=1e-6, rtol=1e-5)
    chex.assert_tree_all_finite(a)
    assert not np.allclose(a[1], apply(params, tokens, np.array([12, 3]))[1], atol=1e-3)


def test_old_byte_vocab_checkpoint_converts():
    """A 257-row checkpoint (ids byte + 1, 0 = padding) gives the same text embeddings as
    before after :func:`byte_vocab_257_to_259`, with the shared tokenizer's ids."""
    config = load_config("experiments/contrastive/siglip.py:smoke")
    model = contrastive_model.make_model(config)
    texts = ["a red circle left of a blue square", "the number seven", "é"]
    L = config.model.text.max_len
    ids, lengths = ByteTokenizer().encode_batch(texts, L)
    params = model.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.uint8), ids, lengths)
    params = jax.tree.map(np.asarray, nn.unbox(params["params"]))  # as checkpoints hold them
    old_table = np.random.default_rng(0).normal(size=(257, 32)).astype(np.float32)
    old = {**params, "txt": {**params["txt"], "token_embedding": {"embedding": old_table}}}
    # the old tokenizer: UTF-8 bytes + 1, padded with 0
    old_ids = np.where(ids < 256, ids + 1, 0)
    old_model = model.clone(text={**model.text, "vocab_size": 257})
    want = old_model.apply({"params": old}, old_ids, lengths, method="encode_text")
    new = contrastive_model.byte_vocab_257_to_259(old)
    assert new["txt"]["token_embedding"]["embedding"].shape == (259, 32)
    got = model.apply({"params": new}, ids, lengths, method="encode_text")
    chex.assert_trees_all_close(got, want, atol=1e-6, rtol=1e-6)
    assert jax.tree.structure(new) == jax.tree.structure(params)
    with pytest.raises(ValueError, match="259 rows, not 257"):
        contrastive_model.byte_vocab_257_to_259(new)


@pytest.mark.parametrize("pool,scan", [("map", True), ("gap", False), ("cls", False)])
def test_vit_pools_and_scan(pool, scan, variant):
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
    out = variant(vit.apply)(params, x)
    chex.assert_shape(out, (3, 16))
    chex.assert_tree_all_finite(out)


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
    chex.assert_trees_all_close(pe[5, 0], np.sin(1.0), atol=0, rtol=1e-6)
    chex.assert_trees_all_close(pe[4, 4], np.sin(1.0), atol=0, rtol=1e-6)
