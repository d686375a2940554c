"""HF transformers BLIP (random tiny configs, no downloads) vs the converted JAX BLIP, fp32."""

import numpy as np
import pytest
import torch

from jaxmodels.hf import from_hf

transformers = pytest.importorskip("transformers")

B, L, SIZE = 3, 7, 16


def _config():
    vision = dict(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=SIZE,
        patch_size=8,
    )
    text = dict(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=16,
        encoder_hidden_size=32,
    )
    return transformers.BlipConfig(
        vision_config=vision, text_config=text, image_text_hidden_size=24
    )


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.normal(size=(B, 3, SIZE, SIZE)).astype(np.float32)
    ids = rng.integers(1, 50, size=(B, L))
    mask = np.ones((B, L), np.int64)
    mask[1, 4:] = 0  # padding in the attention mask
    mask[2, 6:] = 0
    return pixels, ids, mask


def _randomise(model):
    """HF initialises some weights to constants (LayerNorm 1/0): draw them all at random."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "cls.predictions.decoder" not in name:
                p.copy_(torch.randn_like(p) * 0.2)
    model.tie_weights()
    return model.eval()


def _jax(model, params, method, pixels, ids, mask):
    images = np.transpose(pixels, (0, 2, 3, 1))
    return np.asarray(model.apply({"params": params}, images, ids, mask, method=method))


def _hf_caption_logits(hf, pixels, ids, mask):
    """The HF captioner's logits of NCHW pixels and ids with their attention mask."""
    args = dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    with torch.no_grad():
        return hf(pixel_values=torch.tensor(pixels), **args).logits.numpy()


def test_retrieval_itm_and_itc_match_hf():
    hf = _randomise(transformers.BlipForImageTextRetrieval(_config()))
    pixels, ids, mask = _inputs()
    model, params = from_hf(hf)
    args = (torch.tensor(ids), torch.tensor(pixels))
    with torch.no_grad():
        itm = hf(*args, attention_mask=torch.tensor(mask), use_itm_head=True).itm_score.numpy()
        itc = hf(*args, attention_mask=torch.tensor(mask), use_itm_head=False).itm_score.numpy()
    np.testing.assert_allclose(
        _jax(model, params, "itm_logits", pixels, ids, mask), itm, atol=1e-4, rtol=1e-4
    )
    sims = _jax(model, params, "itc_similarity", pixels, ids, mask)
    assert sims.shape == (B, B)
    np.testing.assert_allclose(sims, itc, atol=1e-4, rtol=1e-4)


def test_captioning_logits_match_hf():
    hf = _randomise(transformers.BlipForConditionalGeneration(_config()))
    pixels, ids, mask = _inputs(1)
    model, params = from_hf(hf)
    out = _hf_caption_logits(hf, pixels, ids, mask)
    got = _jax(model, params, "caption_logits", pixels, ids, mask)
    assert got.shape == (B, L, 50)

    np.testing.assert_allclose(got, out, atol=1e-4, rtol=1e-4)


def test_captioner_loads_from_save_pretrained(tmp_path):
    """``save_pretrained`` leaves the tied LM head out of the safetensors file: the importer
    takes the word embedding in its place, and the directory equals the model in memory."""
    from safetensors.numpy import load_file

    hf = _randomise(transformers.BlipForConditionalGeneration(_config()))
    hf.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert "text_decoder.cls.predictions.decoder.weight" not in saved
    model, params = from_hf(str(tmp_path))
    want_model, want = from_hf(hf)
    assert model == want_model
    pixels, ids, mask = _inputs(2)
    np.testing.assert_array_equal(
        _jax(model, params, "caption_logits", pixels, ids, mask),
        _jax(want_model, want, "caption_logits", pixels, ids, mask),
    )


def test_a_directory_normalises_with_its_preprocessor_config(tmp_path):
    """A captioner directory's ``preprocessor_config.json`` gives the module its statistics: the
    family's pixels of uint8 images are the checkpoint's own processor's, and so are the logits
    (an in-memory model has no processor: BLIP's defaults)."""
    from jaxmodels.data.transforms import CLIP_MEAN
    from jaxmodels.models.blip.data import pixels as family_pixels

    mean, std = [0.3, 0.6, 0.2], [0.2, 0.4, 0.35]
    hf = _randomise(transformers.BlipForConditionalGeneration(_config()))
    hf.save_pretrained(tmp_path)
    proc = transformers.BlipImageProcessor(image_mean=mean, image_std=std, size=SIZE)
    proc.save_pretrained(tmp_path)
    model, params = from_hf(str(tmp_path))
    assert (model.image_mean, model.image_std) == (tuple(mean), tuple(std))
    assert from_hf(hf)[0].image_mean == CLIP_MEAN
    images = np.random.default_rng(3).integers(0, 256, (B, SIZE, SIZE, 3), dtype=np.uint8)
    want = proc(list(images), do_resize=False, return_tensors="np")["pixel_values"]
    got = np.asarray(family_pixels(images, model.image_mean, model.image_std))
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), want, atol=1e-6)
    _, ids, mask = _inputs(4)
    out = _hf_caption_logits(hf, want, ids, mask)
    got = _jax(model, params, "caption_logits", got.transpose(0, 3, 1, 2), ids, mask)
    np.testing.assert_allclose(got, out, atol=1e-4, rtol=1e-4)
