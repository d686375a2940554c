"""BLIP's evaluators chosen by name, and the Scorer's chunks against one pass over every row."""

import jax
import numpy as np
import pytest
from flax import linen as nn

from jaxmodels.config import load_config
from jaxmodels.data import transforms
from jaxmodels.data.image_text import COLORS
from jaxmodels.models.blip import data
from jaxmodels.models.blip.evaluators import Scorer
from jaxmodels.models.blip.model import BLIP
from jaxmodels.models.blip.task import build_task, make_model
from jaxmodels.models.blip.tokens import make_layout


@pytest.fixture(scope="module")
def smoke():
    """The smoke config choosing ``retrieval`` only, its task and initial parameters."""
    config = load_config("experiments/blip/pretrain.py:smoke")
    assert tuple(config.evals) == ("retrieval", "captioning")
    config.evals = ("retrieval",)
    task = build_task(config, None)
    return config, task, nn.unbox(jax.jit(task.init)(jax.random.key(0)))


def test_config_evals_choose_the_evaluators(smoke):
    config, task, params = smoke
    got = task.evaluate(params, jax.random.key(1))
    recalls = {f"{d}_recall@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}
    assert set(got) == {f"{s}_{r}" for s in ("itc", "itm") for r in recalls}  # no captioning
    assert all(0 <= v <= 1 for v in got.values())
    config.evals = ("captioning", "cider")
    with pytest.raises(ValueError, match=r"\['cider'\]; offered: captioning, retrieval, zero_"):
        build_task(config, None)


def test_scorer_chunks_equal_one_pass_over_every_row(smoke):
    config, _, params = smoke
    layout = make_layout(config.data)
    model = make_model(config, layout)
    images, captions = data.split("eval", 11, config.data.image_size, 0)
    ids = layout.encode(captions)["text"]
    rules = config.mesh.rules
    chunked, whole = Scorer(model, layout, rules, 4), Scorer(model, layout, rules, 11)  # 4+4+3
    for a, b in zip(chunked.images(params, images), whole.images(params, images), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    tokens = whole.images(params, images)[0]
    np.testing.assert_allclose(
        chunked.texts(params, ids), whole.texts(params, ids), rtol=1e-5, atol=1e-5
    )
    p = chunked.itm(params, tokens, ids, prob=True)
    np.testing.assert_allclose(p, whole.itm(params, tokens, ids, prob=True), rtol=1e-5, atol=1e-6)
    assert p.shape == (11,) and ((p > 0) & (p < 1)).all()


def test_zero_shot_on_a_labelled_folder_by_itc(smoke, tmp_path, colour_folder):
    """``zero_shot.dir`` adds the folder evaluator: top-1 by ITC features equal to a brute-force
    computation; a prompt outside the closed vocabulary stops the build naming the word."""
    config, _, params = smoke
    colours = {c: rgb for c, rgb in COLORS.items() if c in data.WORDS}
    folder = colour_folder(tmp_path / "colours", colours, per_class=2, shade=40.0)
    templates = tmp_path / "templates.txt"
    templates.write_text("a {}\na picture of a {}\n")  # the scenes' own words
    config = config.copy_and_resolve_references()
    config.evals = ("retrieval",)
    config.zero_shot.update(dir=str(folder), templates=str(templates), name="scenes")
    got = build_task(config, None).evaluate(params, jax.random.key(1))
    assert {"zeroshot_scenes_top1", "itc_i2t_recall@1"} <= set(got)
    assert "zeroshot_scenes_top5" not in got  # four classes

    layout = make_layout(config.data)
    apply = jax.jit(make_model(config, layout).apply, static_argnames="method")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    size = config.data.image_size
    images = np.stack([transforms.eval_image(p.read_bytes(), size, str(p)) for p in files])
    tokens = apply({"params": params}, data.pixels(images), method=BLIP.image_tokens)
    zimg = apply({"params": params}, tokens, method=BLIP.image_features)
    zcls = []
    for c in sorted(colours):
        ids = layout.encode([f"a {c}", f"a picture of a {c}"])["text"]
        z = apply({"params": params}, ids, ids != layout.pad_id, method=BLIP.text_features)
        zcls.append(np.mean(z, axis=0) / np.linalg.norm(np.mean(z, axis=0)))
    predicted = np.argmax(np.asarray(zimg) @ np.stack(zcls).T, axis=1)
    labels = [sorted(colours).index(p.parent.name) for p in files]
    assert got["zeroshot_scenes_top1"] == pytest.approx(np.mean(predicted == labels))

    config.zero_shot.templates = "clip_imagenet"
    with pytest.raises(ValueError, match="'bad' is not in the closed vocabulary"):
        build_task(config, None)
