"""CLIP and SigLIP smoke configs train through the shared trainer; evaluators report metrics."""

import io
import json

import jax
import numpy as np
import pytest
from jax.sharding import AxisType
from PIL import Image

from jaxmodels.config import load_config
from jaxmodels.data import webdataset
from jaxmodels.data.tokenizers import load_tokenizer
from jaxmodels.models.contrastive import data as contrastive_data
from jaxmodels.models.contrastive import model as contrastive_model
from jaxmodels.models.contrastive import task as contrastive_task
from jaxmodels.train import loop


def _config(name, arg="smoke"):
    return load_config(f"experiments/contrastive/{name}.py:{arg}")


def _shards(tmp_path, n_shards=3, per_shard=16):
    """Shards of random images captioned by their mean colour's strongest channel."""
    rng = np.random.default_rng(0)
    for s in range(n_shards):
        records = []
        for r in range(per_shard):
            image = rng.integers(0, 255, (20, 28, 3), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, "JPEG")
            caption = f"mostly {('red', 'green', 'blue')[int(image.mean((0, 1)).argmax())]}"
            records.append((f"{s}{r:04d}", {"jpg": buf.getvalue(), "txt": caption.encode()}))
        webdataset.write_shard(str(tmp_path / f"{s}.tar"), records)
    return f"{tmp_path}/{{0..{n_shards - 2}}}.tar", f"{tmp_path}/{n_shards - 1}.tar"


@pytest.mark.parametrize("name", ["siglip", "clip"])
def test_smoke_config_trains_on_8_devices(name, tmp_path, request):
    """data=-1 puts the batch on all 8 fake devices: SigLIP runs its chunked ring loss on the
    embedded data (bytes); CLIP trains on webdataset shards with a CLIP BPE tokenizer.json (its
    vocabulary sizes the text table) and reports retrieval on held-out ones."""
    config = _config(name)
    if name == "clip":
        urls, eval_urls = _shards(tmp_path)
        config.data.update(name="webdataset", urls=urls, eval_urls=eval_urls, retrieval_size=12)
        tokenizer = request.getfixturevalue("clip_tokenizer_dir") / "tokenizer.json"
        config.data.tokenizer = str(tokenizer)
        tok = load_tokenizer(str(tokenizer))
        batch = next(contrastive_data.build(config, tok).train(0, 1))
        ids, lengths = tok.encode_batch(["mostly red", "mostly green", "mostly blue"], 48)
        assert {tuple(row) for row in batch["text"]} <= {tuple(row) for row in ids}
        assert set(batch["text_len"]) <= set(lengths)  # <|startoftext|> mostly X <|endoftext|>
    metrics = loop.train(config, str(tmp_path / "run"))
    assert np.isfinite(metrics["loss"])
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [x for x in lines if "eval_i2t_recall@5" in x]
    assert evals and evals[-1]["step"] == 4
    zero_shot = ("eval_zeroshot_shapes_top1", "eval_zeroshot_digits_top1")
    for key in ("eval_loss", "eval_t2i_recall@1", *(zero_shot if name == "siglip" else ())):
        assert 0 <= evals[-1][key] < np.inf
    assert name == "siglip" or not any(key.startswith("eval_zeroshot") for key in evals[-1])


def test_family_loss_impls_agree():
    """The chunked, all-gather and dense sigmoid losses agree on a real model's embeddings."""
    config = _config("siglip")
    mesh = jax.make_mesh((4, 2, 1), ("data", "fsdp", "tensor"), (AxisType.Auto,) * 3)
    model = contrastive_model.make_model(config)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(8, 16, 16, 3), dtype=np.uint8)
    tokens = rng.integers(0, 256, size=(8, config.model.text.max_len))
    lengths = rng.integers(1, config.model.text.max_len, size=(8,))
    params = model.init(jax.random.key(0), images, tokens, lengths)
    z = model.apply(params, images, tokens, lengths)
    values = {}
    for impl in ("chunked", "allgather", "dense"):
        config.model.loss_impl = impl
        with jax.set_mesh(mesh):
            values[impl] = float(jax.jit(contrastive_task.make_loss(config, mesh))(*z))
    np.testing.assert_allclose(values["chunked"], values["dense"], rtol=1e-5)
    np.testing.assert_allclose(values["allgather"], values["dense"], rtol=1e-5)
    config.model.loss_impl = "ring"
    with pytest.raises(ValueError, match="loss_impl='ring'"):
        contrastive_task.make_loss(config, mesh)


def test_old_vocab_size_is_refused(tmp_path):
    config = _config("siglip")
    config.model.text.vocab_size = 257
    with pytest.raises(ValueError, match="byte_vocab_257_to_259"):
        loop.train(config, str(tmp_path))


def test_text_table_follows_the_tokenizer(siglip_tokenizer_dir):
    """vocab_size=0 takes the tokenizer's size; a table too small for it names both keys."""
    config = _config("siglip")
    config.data.tokenizer = str(siglip_tokenizer_dir)
    assert contrastive_model.make_model(config).text["vocab_size"] == 400
    config.model.text.vocab_size = 300
    with pytest.raises(
        ValueError, match="vocab_size=300 < the 400 ids of the tokenizer config.dat"
    ):
        contrastive_model.make_model(config)


@pytest.mark.parametrize("size", [20, 4])
def test_image_size_the_patches_cannot_tile_is_refused(size, tmp_path):
    config = _config("siglip")
    config.data.image_size = size  # patch 8
    match = f"config.data.image_size={size} is not a multiple of config.model.image.patch_size=8"
    with pytest.raises(ValueError, match=match):
        loop.train(config, str(tmp_path))


def _study():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "loss_study", "experiments/contrastive/loss_study.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_loss_study_configs_differ_only_in_the_loss():
    """Same towers, data and optimizer (up to the scalars' learning rate in sigmoid-auto-lr10),
    equal examples; b = -log(n - 1) under b_init='auto'."""
    study = _study()
    configs = {v: study.study_config(v, 32, 1, 9600) for v in study.VARIANTS}
    flat = {v: dict(_flatten(c.to_dict())) for v, c in configs.items()}
    differ = {k for k in flat["softmax"] if len({str(f[k]) for f in flat.values()}) > 1}
    assert differ == {"model.variant", "model.t_prime_init", "model.b_init", "train.lr_multipliers"}
    assert configs["sigmoid-auto-lr10"].train.lr_multipliers == "t_prime=10,b=10"
    c = configs["sigmoid-auto"]
    assert c.train.steps * c.train.batch_size == 9600 and c.seed == 1
    assert contrastive_model.make_model(c).b_init == pytest.approx(-np.log(31))
    assert contrastive_model.make_model(configs["sigmoid-10"]).b_init == -10.0
    assert contrastive_model.make_model(configs["softmax"]).b_init is None
    with pytest.raises(ValueError, match="a number or 'auto'"):
        contrastive_model.bias_init("atuo", 32)


def _flatten(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v
