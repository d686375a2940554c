"""Zero-shot and retrieval evaluators against scikit-learn and closed-form answers."""

import jax
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import AxisType
from sklearn.metrics import top_k_accuracy_score

from jaxmodels.config import load_config
from jaxmodels.data import transforms
from jaxmodels.data.tokenizers import ByteTokenizer
from jaxmodels.evaluate.retrieval import CaptionIndex, recall_at_k
from jaxmodels.evaluate.zero_shot import TEMPLATES, class_embeddings, zero_shot_accuracy
from jaxmodels.models.contrastive import data as contrastive_data
from jaxmodels.models.contrastive.model import TwoTowers, make_model
from jaxmodels.models.contrastive.task import build_task


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_recall_matches_sklearn_top_k():
    rng = np.random.default_rng(0)
    zi, zt = _unit(rng.normal(size=(40, 8))), _unit(rng.normal(size=(40, 8)))
    zt = _unit(zt + 1.5 * zi)  # partially aligned pairs
    got = recall_at_k(zi, zt)
    labels = np.arange(40)
    for k in (1, 5, 10):
        want_i2t = top_k_accuracy_score(labels, zi @ zt.T, k=k, labels=labels)
        want_t2i = top_k_accuracy_score(labels, zt @ zi.T, k=k, labels=labels)
        assert got[f"i2t_recall@{k}"] == pytest.approx(want_i2t)
        assert got[f"t2i_recall@{k}"] == pytest.approx(want_t2i)
    assert 0 < got["i2t_recall@1"] < got["i2t_recall@10"] <= 1


def test_recall_with_shared_captions():
    """Images 0 and 1 share caption A: both retrieve A at rank 1; A retrieves either image."""
    zi = _unit(np.array([[1.0, 0.1], [1.0, -0.1], [0.0, 1.0]]))
    zt = _unit(np.array([[1.0, 0.0], [0.0, 1.0]]))
    got = recall_at_k(zi, zt, img_ids=[0, 0, 1], txt_ids=[0, 1], ks=(1,))
    assert got == {"i2t_recall@1": 1.0, "t2i_recall@1": 1.0}
    with pytest.raises(ValueError, match="at least one match"):
        recall_at_k(zi, zt, img_ids=[0, 0, 2], txt_ids=[0, 1])


def test_zero_shot_prompt_ensemble_and_accuracy():
    basis = np.eye(3)
    table = {
        f"{t} {c}": basis[i] + 0.1 * j for i, c in enumerate("abc") for j, t in enumerate("xy")
    }
    zcls = class_embeddings(lambda ps: np.stack([table[p] for p in ps]), "abc", ("x {}", "y {}"))
    np.testing.assert_allclose(np.linalg.norm(zcls, axis=1), 1, rtol=1e-6)
    assert np.argmax(zcls, axis=1).tolist() == [0, 1, 2]
    rng = np.random.default_rng(1)
    zimg, labels = _unit(rng.normal(size=(50, 3))), rng.integers(0, 3, 50)
    got = zero_shot_accuracy(zimg, zcls, labels, ks=(1, 2))
    scores = zimg @ zcls.T
    assert got["top1"] == pytest.approx(np.mean(scores.argmax(1) == labels))
    assert got["top2"] == pytest.approx(top_k_accuracy_score(labels, scores, k=2))


def test_config_evals_choose_the_evaluators():
    """A subset runs alone; retrieval in chunks of 24 (64 pairs: the last one padded) equals one
    forward pass over every pair; an unknown name is refused naming the offered ones."""
    config = load_config("experiments/contrastive/siglip.py:smoke")
    assert tuple(config.evals) == ("zeroshot", "retrieval")
    config.model.loss_impl, config.data.eval_batch_size = "dense", 24
    config.evals = ("retrieval",)
    mesh = jax.make_mesh((8, 1, 1), ("data", "fsdp", "tensor"), (AxisType.Auto,) * 3)
    task = build_task(config, mesh)
    params = nn.unbox(jax.jit(task.init)(jax.random.key(0)))
    with jax.set_mesh(mesh):
        got = task.evaluate(params, jax.random.key(1))
    assert set(got) == {f"{d}_recall@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}

    pairs = contrastive_data.build(config, ByteTokenizer()).retrieval
    index = CaptionIndex.of(pairs.captions)
    ids, lengths = ByteTokenizer().encode_batch(index.captions, config.model.text.max_len)
    variables, model = {"params": params}, make_model(config)
    zimg = model.apply(variables, pairs.images, method=TwoTowers.encode_image)
    ztxt = model.apply(variables, ids, lengths, method=TwoTowers.encode_text)
    want = index.recall(np.asarray(zimg) @ np.asarray(ztxt).T)
    assert got == pytest.approx(want)

    config.evals = ("zeroshot", "bogus")
    with pytest.raises(ValueError, match=r"\['bogus'\]; offered: retrieval, zero_shot, zeroshot"):
        build_task(config, mesh)


COLOURS = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 230),
    "yellow": (230, 220, 40), "dark_grey": (70, 70, 70), "white": (240, 240, 240),
}  # fmt: skip


def test_zero_shot_on_a_labelled_folder_equals_brute_force(tmp_path, colour_folder):
    """Setting zero_shot.dir adds ``zero_shot`` to config.evals' choice; it reports top-1/top-5
    on the folder equal to a brute-force computation with the model (the evaluation view of
    each file, every prompt embedded, the renormalised mean per class). ``jaxmodels eval`` with
    init.workdir / init.hf on a workdir with no checkpoint: tests/core/test_warmstart.py."""
    config = load_config("experiments/contrastive/siglip.py:smoke")
    folder = colour_folder(tmp_path / "colours", COLOURS, per_class=2, shade=40.0)
    config.model.loss_impl, config.evals = "dense", ("retrieval",)
    config.zero_shot.update(dir=str(folder), templates="clip_imagenet")
    mesh = jax.make_mesh((8, 1, 1), ("data", "fsdp", "tensor"), (AxisType.Auto,) * 3)
    task = build_task(config, mesh)
    params = nn.unbox(jax.jit(task.init)(jax.random.key(0)))
    with jax.set_mesh(mesh):
        got = task.evaluate(params, jax.random.key(1))
    assert "i2t_recall@1" in got and not any("digits" in k for k in got)

    model, size = make_model(config), config.data.image_size
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    labels = [sorted(COLOURS).index(p.parent.name) for p in files]
    images = np.stack([transforms.eval_image(p.read_bytes(), size, str(p)) for p in files])
    apply = jax.jit(model.apply, static_argnames="method")
    zimg = apply({"params": params}, images, method=TwoTowers.encode_image)
    zcls = []
    for c in sorted(COLOURS):
        prompts = [t.format(c.replace("_", " ")) for t in TEMPLATES["clip_imagenet"]]
        ids, lengths = ByteTokenizer().encode_batch(prompts, config.model.text.max_len)
        ztxt = apply({"params": params}, ids, lengths, method=TwoTowers.encode_text)
        zcls.append(np.mean(ztxt, axis=0) / np.linalg.norm(np.mean(ztxt, axis=0)))
    scores = np.asarray(zimg) @ np.stack(zcls).T
    for k in (1, 5):
        want = top_k_accuracy_score(labels, scores, k=k, labels=range(6))
        assert got[f"zeroshot_colours_top{k}"] == pytest.approx(want)
