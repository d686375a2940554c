"""``--config.init.hf=DIR`` for CLIP / SigLIP: the checkpoint's towers, sizes and tokenizer.

Tiny random ``CLIPModel`` / ``SiglipModel`` directories, saved with ``save_pretrained`` beside
the session's CLIP BPE / SigLIP SentencePiece tokenizers (tests/conftest.py), are fine-tuned a
few steps with ``experiments/contrastive/hf.py:smoke``.
"""

import shutil

import jax
import numpy as np
import pytest
from jax.sharding import AxisType

import jaxmodels
from jaxmodels.config import load_config, saved_config, validate
from jaxmodels.data.tokenizers import find_tokenizer
from jaxmodels.hf import from_hf
from jaxmodels.models.contrastive.task import build_task
from jaxmodels.train import loop

SIZE, MAX_LEN = 16, 24
MESH = jax.make_mesh((8, 1, 1), ("data", "fsdp", "tensor"), (AxisType.Auto,) * 3)
STATS = dict(image_mean=[0.3, 0.6, 0.2], image_std=[0.2, 0.4, 0.35])  # CLIP's preprocessor
TOWER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)


def _save(path, tokenizer_dir, kind: str):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    shutil.copytree(tokenizer_dir, path)
    tok = find_tokenizer(str(path))
    text = TOWER | dict(vocab_size=tok.vocab_size, max_position_embeddings=MAX_LEN,
                        pad_token_id=tok.pad_id, eos_token_id=tok.eos_id)  # fmt: skip
    vision = TOWER | dict(image_size=SIZE, patch_size=8)
    torch.manual_seed(0)
    if kind == "clip":
        text["bos_token_id"] = tok.bos_id
        cfg = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
        model = transformers.CLIPModel(cfg)
        processor = dict(size={"shortest_edge": SIZE}, crop_size=SIZE, **STATS)
        transformers.CLIPImageProcessor(**processor).save_pretrained(path)  # not CLIP's stats
    else:
        cfg = transformers.SiglipConfig(text_config=text, vision_config=vision)
        model = transformers.SiglipModel(cfg)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory, clip_tokenizer_dir):
    return _save(tmp_path_factory.mktemp("clip") / "ckpt", clip_tokenizer_dir, "clip")


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory, siglip_tokenizer_dir):
    return _save(tmp_path_factory.mktemp("siglip") / "ckpt", siglip_tokenizer_dir, "siglip")


def _config(hf_dir):
    config = load_config("experiments/contrastive/hf.py:smoke")
    config.init.hf = str(hf_dir)
    config.model.attention_impl = "xla"
    config.train.learning_rate = 1e-3  # steps large enough to move the weights visibly
    config.evals = ()  # the evaluators have tests of their own
    t = config.train  # two steps, one checkpoint, no eval: one compiled step
    t.steps, t.eval_every, t.checkpoint_every = 2, 0, 2
    validate(config)
    return config


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_finetunes_then_exports_to_transformers(kind, request, tmp_path):
    """Import -> fine-tune -> export: ``from_pretrained`` gives the run's own logits."""
    import torch
    import transformers

    hf_dir = request.getfixturevalue(f"{kind}_dir")
    config = _config(hf_dir)
    task = build_task(config, MESH)
    text = task.model.text
    if kind == "clip":
        assert (task.model.image["pool"], text["pool"], text["causal"]) == ("cls", "eos", True)
    else:  # SigLIP reads texts padded to max_len whole, as it was trained
        assert (text["pool"], text["mask_padding"], task.model.b_init) == ("final", False, -10.0)
    assert task.tokenizer.vocab_size == text["vocab_size"]  # the directory's own tokenizer
    if kind == "clip":  # its preprocessor_config.json's statistics (SigLIP: the default 0.5)
        assert [list(task.model.image_mean), list(task.model.image_std)] == list(STATS.values())
    _, want = from_hf(str(hf_dir))
    jax.tree.map(np.testing.assert_array_equal, task.start_params(), want)

    workdir = tmp_path / "run"
    last = loop.train(config, str(workdir))
    assert np.isfinite(last["loss"])
    saved = saved_config(str(workdir))
    loop.export(saved, str(workdir), str(tmp_path / "export"))
    run = jaxmodels.load(str(workdir))
    exported = transformers.AutoModel.from_pretrained(tmp_path / "export").eval()
    assert type(exported).__name__ == {"clip": "CLIPModel", "siglip": "SiglipModel"}[kind]
    images = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    ids, lengths = run.tokenizer.encode_batch(["a red circle", "the number seven"], MAX_LEN)
    mask = (np.arange(MAX_LEN) < lengths[:, None]).astype(np.int64)
    if kind == "siglip":
        mask = np.ones_like(mask)  # as the run reads them (mask_padding=False)
    got = run.module.apply({"params": run.params}, images, ids, lengths, method="logits")
    m = run.module
    px = (images / 255.0 - np.array(m.image_mean)) / np.array(m.image_std)
    with torch.no_grad():
        out = exported(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            pixel_values=torch.tensor(px.astype(np.float32).transpose(0, 3, 1, 2)),
        )
    np.testing.assert_allclose(got, out.logits_per_image.numpy(), atol=1e-4)
    processor = transformers.AutoProcessor.from_pretrained(tmp_path / "export").image_processor
    stats = [processor.image_mean, processor.image_std]  # the run's, as the export says them
    np.testing.assert_allclose(stats, [m.image_mean, m.image_std], rtol=1e-7)
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), run.params, want)
    assert max(jax.tree.leaves(moved)) > 1e-4  # the export holds the fine-tuned weights


def test_a_contradicting_config_is_refused_naming_the_keys(clip_dir):
    config = load_config("experiments/contrastive/clip.py")
    config.init.hf = str(clip_dir)
    with pytest.raises(ValueError, match=r"image_size=32 .*text.pool='last'.*image.width=96"):
        build_task(config, MESH)
    config = _config(clip_dir)
    config.data.image_size = 32
    with pytest.raises(ValueError, match=r"config.data.image_size=32 \(the checkpoint's: 16\)"):
        build_task(config, MESH)


def test_an_import_evaluates_zero_shot_on_a_folder_with_no_training(
    clip_dir, tmp_path, colour_folder
):
    """The clip_benchmark workflow: ``jaxmodels eval`` on an empty workdir with ``init.hf`` and
    ``zero_shot.dir`` scores the imported weights (step 0) and writes only its metrics."""
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    folder = colour_folder(tmp_path / "colours", colours, per_class=2)
    config = _config(clip_dir)
    config.zero_shot.update(dir=str(folder), templates="simple")
    config.evals = ("zero_shot",)
    workdir = tmp_path / "zs"
    got = loop.evaluate(config, str(workdir))
    assert 0.0 <= got["eval_zeroshot_colours_top1"] <= 1.0
    assert "eval_zeroshot_colours_top5" not in got  # three classes
    assert not (workdir / "checkpoints").exists()
    assert (workdir / "metrics.jsonl").read_text().count("eval_zeroshot_colours_top1") == 1
