"""BLIP's evaluators chosen by name, and the Scorer's chunks against one pass over every row."""

import jax
import numpy as np
import pytest
from flax import linen as nn

from jaxmodels.config import load_config
from jaxmodels.models.blip import data
from jaxmodels.models.blip.evaluators import Scorer
from jaxmodels.models.blip.task import build_task, make_model


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
    with pytest.raises(ValueError, match=r"\['cider'\]; offered: captioning, retrieval"):
        build_task(config, None)


def test_scorer_chunks_equal_one_pass_over_every_row(smoke):
    config, _, params = smoke
    model = make_model(config)
    images, captions = data.split("eval", 11, config.data.image_size, 0)
    ids = data.encode(captions, config.data.max_len)["text"]
    rules = config.mesh.rules
    chunked, whole = Scorer(model, rules, 4), Scorer(model, rules, 11)  # 11 = 4 + 4 + 3
    for a, b in zip(chunked.images(params, images), whole.images(params, images), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    tokens = whole.images(params, images)[0]
    np.testing.assert_allclose(
        chunked.texts(params, ids), whole.texts(params, ids), rtol=1e-5, atol=1e-5
    )
    p = chunked.itm(params, tokens, ids, prob=True)
    np.testing.assert_allclose(p, whole.itm(params, tokens, ids, prob=True), rtol=1e-5, atol=1e-6)
    assert p.shape == (11,) and ((p > 0) & (p < 1)).all()
