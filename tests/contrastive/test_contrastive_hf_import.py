"""``from_hf(CLIPModel | SiglipModel)``: logits and features equal HF's (random init, CPU)."""

import json

import jax
import numpy as np
import pytest
import torch
from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

from jaxmodels.config import load_config
from jaxmodels.convert.read import image_processing
from jaxmodels.data.transforms import CLIP_MEAN
from jaxmodels.hf import from_hf
from jaxmodels.models.contrastive import hf as contrastive_hf
from jaxmodels.models.contrastive.model import TwoTowers, l2_normalize, make_model

VOCAB, EOS, PAD, SIZE, L = 99, 98, 1, 16, 10
TEXT = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=16, pad_token_id=PAD)  # fmt: skip
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              image_size=SIZE, patch_size=4)  # fmt: skip


def hf_model(kind: str):
    """A random HF model: ``clip`` (EOS pooling), ``clip_eos2`` (an old config with
    eos_token_id=2: the largest id is pooled) or ``siglip``. HF initialises some weights to
    constants (LayerNorm 1/0, SigLIP's scale and bias 0): every weight is moved off them."""
    torch.manual_seed(0)
    if kind.startswith("clip"):
        text = TEXT | dict(eos_token_id=2 if kind == "clip_eos2" else EOS, bos_token_id=0)
        cfg = CLIPConfig(text_config=text, vision_config=VISION, projection_dim=24)
        model = CLIPModel(cfg)
    else:
        text = TEXT | dict(eos_token_id=EOS, bos_token_id=None)
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=VISION))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
        model.logit_scale.fill_(1.3)
        if kind == "siglip":
            model.logit_bias.fill_(-2.0)
    return model.eval()


def inputs(rng):
    """uint8 images and right-padded ids with their attention mask (EOS ends each text)."""
    images = rng.integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    ids = rng.integers(3, EOS - 1, (2, L))
    mask = np.ones((2, L), np.int64)
    ids[0, L - 1] = EOS
    ids[1, 5], ids[1, 6:], mask[1, 6:] = EOS, PAD, 0
    return images, ids, mask


def pixel_values(images, model: TwoTowers):
    """HF's image processor's normalisation (rescale by 1/255, then (x - mean) / std), NCHW."""
    x = (images / 255.0 - np.array(model.image_mean)) / np.array(model.image_std)
    return torch.tensor(x.astype(np.float32).transpose(0, 3, 1, 2))


def normalized(features) -> np.ndarray:
    x = getattr(features, "pooler_output", features).numpy()
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("kind", ["clip", "clip_eos2", "siglip"])
def test_logits_and_features_match_hf(kind):
    hf = hf_model(kind)
    model, params = from_hf(hf)
    v = {"params": params}
    images, ids, mask = inputs(np.random.default_rng(0))
    px, tids, tmask = pixel_values(images, model), torch.tensor(ids), torch.tensor(mask)
    with torch.no_grad():
        want = hf(input_ids=tids, attention_mask=tmask, pixel_values=px).logits_per_image.numpy()
        want_img = normalized(hf.get_image_features(pixel_values=px))
        want_txt = normalized(hf.get_text_features(input_ids=tids, attention_mask=tmask))
    got = model.apply(v, images, ids, mask, method="logits")
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)  # measured <= 2e-6
    np.testing.assert_allclose(model.apply(v, images, method="encode_image"), want_img, atol=1e-5)
    np.testing.assert_allclose(model.apply(v, ids, mask, method="encode_text"), want_txt, atol=1e-5)
    # lengths in place of the mask (the family's own batches) give the same embeddings
    lengths = mask.sum(1)
    np.testing.assert_allclose(
        model.apply(v, ids, lengths, method="encode_text"), want_txt, atol=1e-5
    )


def test_pooling_rules():
    """CLIP pools the first EOS (or, old configs, the largest id); SigLIP the final position."""
    clip, _ = from_hf(hf_model("clip"))
    assert (clip.text["pool"], clip.text["eos_id"], clip.text["causal"]) == ("eos", EOS, True)
    assert from_hf(hf_model("clip_eos2"))[0].text["pool"] == "argmax"
    siglip, params = from_hf(hf_model("siglip"))
    assert siglip.text["pool"] == "final" and not siglip.image_projection
    np.testing.assert_allclose([params["t_prime"], params["b"]], [1.3, -2.0])
    assert (clip.image["pool"], clip.image["pre_norm"], clip.image["patch_bias"]) == ("cls", 1, 0)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_from_saved_directory(tmp_path, kind):
    hf = hf_model(kind)
    hf.save_pretrained(tmp_path)
    model, params = from_hf(str(tmp_path))
    want_model, want = from_hf(hf)
    assert model == want_model
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)


def test_refusals():
    hf = hf_model("siglip")
    cfg = hf.config
    cfg.vision_config.vision_use_head = False
    with pytest.raises(ValueError, match="vision_use_head=False"):
        contrastive_hf.build(cfg, "SiglipModel")
    cfg = hf_model("clip").config
    cfg.text_config.hidden_act = "relu"
    with pytest.raises(ValueError, match="text_config hidden_act='relu' is not supported"):
        contrastive_hf.build(cfg, "CLIPModel")


def test_native_towers_unchanged():
    """A native config's images are still mapped by x / 127.5 - 1 (to float rounding: XLA may
    turn a division by a scalar into a multiplication)."""
    config = load_config("experiments/contrastive/siglip.py:smoke")
    model = make_model(config)
    images, ids, _ = inputs(np.random.default_rng(1))
    v = model.init(jax.random.key(0), images, ids, np.full((2,), L))
    old = model.apply(
        v, images, method=lambda m, x: l2_normalize(m.img_head(m.img(x / 127.5 - 1.0)))
    )
    np.testing.assert_allclose(model.apply(v, images, method="encode_image"), old, atol=1e-6)


def test_export_refuses_a_native_run(tmp_path):
    """Only a run started from CLIP / SigLIP (init.hf) has an HF counterpart; nothing written."""
    config = load_config("experiments/contrastive/siglip.py:smoke")
    with pytest.raises(ValueError, match="only a contrastive run started from an HF"):
        contrastive_hf.export(config, {}, str(tmp_path / "out"), None)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# The directory's preprocessor_config.json: its statistics, checked, and written back by export
# ---------------------------------------------------------------------------------------------

MEAN, STD = [0.3, 0.6, 0.2], [0.2, 0.4, 0.35]  # neither CLIP's nor SigLIP's


def saved_clip(path, **processor):
    """A random CLIP saved with ``save_pretrained``, and ``CLIPImageProcessor(**processor)``'s
    ``preprocessor_config.json`` when ``processor`` is given; the HF model and processor."""
    from transformers import CLIPImageProcessor

    hf = hf_model("clip")
    hf.save_pretrained(path)
    proc = CLIPImageProcessor(**{"size": {"shortest_edge": SIZE}, "crop_size": SIZE, **processor})
    if processor:
        proc.save_pretrained(path)
    return hf, proc


def test_a_directory_normalises_with_its_preprocessor_config(tmp_path):
    """``from_hf(dir)`` and ``init.hf`` take the file's mean and std; the logits on uint8 images
    are HF's on what the checkpoint's own image processor makes of them."""
    from jaxmodels.convert import load_pretrained

    hf, proc = saved_clip(tmp_path, image_mean=MEAN, image_std=STD)
    model, params = from_hf(str(tmp_path))
    assert (model.image_mean, model.image_std) == (tuple(MEAN), tuple(STD))
    assert from_hf(hf)[0].image_mean == CLIP_MEAN  # in memory: no image processor, CLIP's own
    assert load_pretrained(str(tmp_path), contrastive_hf.ARCHITECTURES).model == model
    images, ids, mask = inputs(np.random.default_rng(2))
    px = proc(list(images), do_resize=False, do_center_crop=False, return_tensors="pt")
    with torch.no_grad():
        out = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), **px)
    got = model.apply({"params": params}, images, ids, mask, method="logits")
    np.testing.assert_allclose(got, out.logits_per_image.numpy(), rtol=0, atol=1e-4)


def test_rescaling_and_no_normalisation_fold_into_the_statistics(tmp_path):
    """HF's ``x * rescale_factor`` (or raw ``x``) and ``do_normalize`` become the module's
    ``(x / 255 - mean) / std``."""
    (tmp_path / "preprocessor_config.json").write_text(
        '{"do_rescale": false, "image_mean": [127.5, 51, 0], "image_std": [127.5, 255, 25.5]}'
    )
    got = image_processing(str(tmp_path))
    np.testing.assert_allclose([got.mean, got.std], [[0.5, 0.2, 0], [0.5, 1, 0.1]])
    (tmp_path / "preprocessor_config.json").write_text('{"do_normalize": false}')
    got = image_processing(str(tmp_path))
    assert (got.mean, got.std, got.size) == ((0, 0, 0), (1, 1, 1), None)
    assert image_processing(str(tmp_path / "no_such_dir")) is None


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"image_std": [0.5, 0.0, 0.5]}, r"image_std=\[0.5, 0.0, 0.5\] must be 3 numbers > 0"),
        ({"image_mean": [0.5, 0.5]}, r"image_mean=\[0.5, 0.5\] must be 3 finite numbers"),
        ({"image_mean": "0.5"}, "image_mean='0.5' must be 3 finite numbers"),
        ({"do_normalize": "yes"}, "do_normalize='yes' must be true or false"),
        ({"rescale_factor": 0}, "rescale_factor=0 must be a number > 0"),
        ({"do_center_crop": False, "size": 0}, "size=0 must be a size > 0"),
        ({"crop_size": {"height": 16}}, r"crop_size=\{'height': 16\} must be a size > 0 or"),
    ],
)
def test_a_malformed_preprocessor_config_is_refused_naming_the_key(tmp_path, spec, match):
    hf_model("clip").save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=rf"preprocessor_config.json: {match}"):
        from_hf(str(tmp_path))


def test_a_preprocessor_config_that_contradicts_config_json_is_refused(tmp_path):
    saved_clip(tmp_path, image_mean=MEAN, crop_size=2 * SIZE)
    with pytest.raises(ValueError, match=r"32x32 images \(crop_size\), but config.json's "):
        from_hf(str(tmp_path))
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="preprocessor_config.json is not JSON"):
        from_hf(str(tmp_path))


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_export_writes_the_runs_image_processor(tmp_path, kind):
    """The exported ``preprocessor_config.json`` loads in ``transformers`` with the run's
    statistics and image size: the directory's own, else the architecture's defaults."""
    import transformers

    hf_dir = tmp_path / "ckpt"
    if kind == "clip":
        saved_clip(hf_dir, image_mean=MEAN, image_std=STD)
    else:
        hf_model(kind).save_pretrained(hf_dir)
    model, params = from_hf(str(hf_dir))
    config = load_config("experiments/contrastive/hf.py:smoke")
    config.init.hf = str(hf_dir)
    written = contrastive_hf.export(config, params, str(tmp_path / "out"), None)
    assert "preprocessor_config.json" in written
    proc = transformers.AutoImageProcessor.from_pretrained(tmp_path / "out")
    want = {"clip": "CLIPImageProcessor", "siglip": "SiglipImageProcessor"}[kind]
    assert type(proc).__name__.startswith(want)
    stats = [proc.image_mean, proc.image_std]
    np.testing.assert_allclose(stats, [model.image_mean, model.image_std], rtol=1e-7)
    assert proc.do_normalize and proc.do_rescale
    assert image_processing(str(tmp_path / "out")).size == (SIZE, SIZE)
