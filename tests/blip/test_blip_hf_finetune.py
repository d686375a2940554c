"""``--config.init.hf=DIR`` for BLIP: an HF captioner fine-tuned, evaluated, sampled, exported.

A tiny random ``BlipForConditionalGeneration``, saved with ``save_pretrained`` beside the
session's BERT WordPiece tokenizer (tests/conftest.py), is fine-tuned two steps with
``experiments/blip/hf.py:smoke``; eval, sample and export then read the run's saved config
alone, as the CLI does without ``--config``.
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
from jaxmodels.models.blip import data
from jaxmodels.models.blip import hf as blip_hf
from jaxmodels.models.blip.model import BLIP
from jaxmodels.models.blip.task import build_task
from jaxmodels.models.blip.tokens import layout_of
from jaxmodels.train import loop

SIZE, TABLE = 24, 32  # image side (3x3 patches of 8), the decoder's position table
MESH = jax.make_mesh((8, 1, 1), ("data", "fsdp", "tensor"), (AxisType.Auto,) * 3)
STATS = dict(image_mean=(0.3, 0.6, 0.2), image_std=(0.2, 0.4, 0.35))  # its preprocessor's
TOWER = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2)


def _save(path, tokenizer_dir, arch="BlipForConditionalGeneration"):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    shutil.copytree(tokenizer_dir, path)
    layout = layout_of(find_tokenizer(str(path)), 12)  # [DEC] / [ENC] after the vocabulary
    text = TOWER | dict(
        vocab_size=layout.vocab_size,
        max_position_embeddings=TABLE,
        encoder_hidden_size=TOWER["hidden_size"],
        bos_token_id=layout.dec_id,
        pad_token_id=layout.pad_id,
        sep_token_id=layout.eos_id,
    )
    vision = TOWER | dict(image_size=SIZE, patch_size=8)
    cfg = transformers.BlipConfig(text_config=text, vision_config=vision, image_text_hidden_size=16)
    torch.manual_seed(0)
    model = getattr(transformers, arch)(cfg)
    with torch.no_grad():  # HF starts LayerNorms at 1 / 0: draw every weight
        for name, p in model.named_parameters():
            if "cls.predictions.decoder" not in name:
                p.copy_(torch.randn_like(p) * 0.2)
    model.tie_weights()
    model.save_pretrained(path)
    transformers.BlipImageProcessor(size=SIZE, **STATS).save_pretrained(path)  # not BLIP's stats
    return path


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory, bert_tokenizer_dir):
    return _save(tmp_path_factory.mktemp("blip") / "ckpt", bert_tokenizer_dir)


def _config(hf_dir):
    config = load_config("experiments/blip/hf.py:smoke")
    config.init.hf = str(hf_dir)
    config.model.attention_impl = "xla"
    config.train.learning_rate = 1e-3  # steps large enough to move the weights visibly
    config.data.caption_eval_size = 4
    t = config.train  # two steps, one checkpoint, evaluation only when asked
    t.steps, t.eval_every, t.checkpoint_every = 2, 0, 2
    t.sample_at_end = False
    validate(config)
    return config


@pytest.fixture(scope="module")
def run_dir(blip_dir, tmp_path_factory):
    """A run fine-tuned two steps from the checkpoint."""
    workdir = tmp_path_factory.mktemp("blip_run") / "run"
    last = loop.train(_config(blip_dir), str(workdir))
    assert np.isfinite(last["loss"]) and set(last) >= {"lm"}
    return workdir


def test_the_import_fixes_the_captioner_and_its_tokenizer(blip_dir):
    task = build_task(_config(blip_dir), MESH)
    model = task.model
    assert (model.encoder, model.decoder) == (False, True)  # L_lm alone: no ITC / ITM parts
    assert (model.image_mean, model.image_std) == tuple(STATS.values())  # preprocessor_config
    assert model.image["width"] == 32 and model.text["max_len"] == TABLE
    assert task.tokenizer.vocab_size == 600  # the directory's own WordPiece vocabulary
    _, want = from_hf(str(blip_dir))
    jax.tree.map(np.testing.assert_array_equal, task.start_params(), want)


def test_eval_and_sample_read_the_run_alone(run_dir):
    """``jaxmodels eval|sample --workdir DIR``: the saved config, no flag repeated; the model is
    built from the run's copy of the HF description (DIR/init_hf)."""
    config = saved_config(str(run_dir))
    assert config.data.image_size == 0  # the user's config, completed again from init_hf
    assert (run_dir / "init_hf" / "config.json").exists()
    assert not list((run_dir / "init_hf").glob("*.safetensors"))
    got = loop.evaluate(config, str(run_dir))
    assert {"eval_bleu4", "eval_cider"} <= set(got)
    assert isinstance(loop.sample(config, str(run_dir)), str)


def test_export_loads_in_transformers_with_the_runs_logits(blip_dir, run_dir, tmp_path):
    """Import -> fine-tune -> export: ``from_pretrained`` gives the run's caption logits."""
    import torch
    import transformers

    written = loop.export(saved_config(str(run_dir)), str(run_dir), str(tmp_path / "out"))
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(written)
    run = jaxmodels.load(str(run_dir))
    exported = transformers.BlipForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    layout = layout_of(run.tokenizer, 12)
    ids = layout.encode(["a red circle", "two blue squares above a green triangle"])["caption"]
    mask = ids != layout.pad_id
    pixels = data.pixels(images, run.module.image_mean, run.module.image_std)
    got = run.module.apply({"params": run.params}, pixels, ids, mask, method=BLIP.caption_logits)
    with torch.no_grad():
        out = exported(
            pixel_values=torch.tensor(np.asarray(pixels).transpose(0, 3, 1, 2)),
            input_ids=torch.tensor(ids, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
        ).logits.numpy()
    print("max |logit difference|:", np.max(np.abs(np.asarray(got) - out)))
    np.testing.assert_allclose(got, out, atol=1e-4)
    processor = transformers.AutoProcessor.from_pretrained(tmp_path / "out").image_processor
    stats = [processor.image_mean, processor.image_std]  # the run's, as the export says them
    np.testing.assert_allclose(stats, [run.module.image_mean, run.module.image_std], rtol=1e-7)
    assert processor.size == {"height": SIZE, "width": SIZE}
    _, start = from_hf(str(blip_dir))
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), run.params, start)
    assert max(jax.tree.leaves(moved)) > 1e-4  # the export holds the fine-tuned weights


def test_a_contradicting_config_is_refused_naming_the_keys(blip_dir):
    config = load_config("experiments/blip/pretrain.py:smoke")
    config.init.hf = str(blip_dir)
    with pytest.raises(
        ValueError, match=r"data.image_size=16 \(the checkpoint's: 24\).*model.momentum=0.995"
    ):
        build_task(config, MESH)
    config = _config(blip_dir)
    config.model.image.width = 64
    with pytest.raises(ValueError, match=r"config.model.image.width=64 \(the checkpoint's: 32\)"):
        build_task(config, MESH)


def test_a_retrieval_checkpoint_is_refused(bert_tokenizer_dir, tmp_path):
    hf_dir = _save(tmp_path / "itm", bert_tokenizer_dir, "BlipForImageTextRetrieval")
    with pytest.raises(ValueError, match="'BlipForImageTextRetrieval' is not supported"):
        build_task(_config(hf_dir), MESH)


def test_export_refuses_a_native_run(tmp_path):
    """Only a run started from an HF captioner (init.hf) has an HF counterpart; nothing written."""
    config = load_config("experiments/blip/pretrain.py:smoke")
    with pytest.raises(ValueError, match="only a blip run started from an HF Blip"):
        blip_hf.export(config, {}, str(tmp_path / "out"), None)
    assert not (tmp_path / "out").exists()
