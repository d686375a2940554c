"""BLIP task on the smoke config: data, the three losses, evaluators, CapFilt on a toy model."""

import os

import jax
import numpy as np
import pytest
from flax import linen as nn

from jaxmodels.config import load_config
from jaxmodels.models.blip import capfilt, data
from jaxmodels.models.blip.sample import Captioner
from jaxmodels.models.blip.task import Scorer, build_task, make_model
from jaxmodels.models.blip.tokens import scenes_layout


@pytest.fixture(scope="module")
def smoke():
    config = load_config("experiments/blip/pretrain.py:smoke")
    task = build_task(config, None)
    return config, task, nn.unbox(jax.jit(task.init)(jax.random.key(0)))


def test_scenes_captions_are_compositional_and_splits_differ():
    images, captions = data.split("train", 64, 32, 0)
    held_images, _ = data.split("eval", 64, 32, 0)
    assert images.shape == (64, 32, 32, 3) and images.dtype == np.uint8
    assert not np.array_equal(images, held_images)
    words = {w for c in captions for w in c.split()}
    assert {"two", "three", "left", "above"} & words and {"red", "blue"} <= words
    layout = scenes_layout(12)
    enc = layout.encode(captions[:4])
    assert (enc["text"][:, 0] == layout.first_id).all()
    assert (enc["caption"][:, :4] == layout.prompt_ids).all()  # [DEC] a picture of
    for caption, text, row in zip(captions, enc["text"], enc["caption"], strict=False):
        assert layout.decode(text[1:]) == caption == layout.decode(row[4:])  # every word
    noisy, corrupted = data.corrupt(captions, 0.3, 0)
    assert 0.2 < corrupted.mean() <= 0.3
    assert all((a != b) == c for a, b, c in zip(noisy, captions, corrupted, strict=True))


def _loss(task, params, batch, rng):
    """``(loss, metrics)`` of the task's loss, with fresh model state when it keeps one."""
    if task.init_model_state is None:
        return task.loss_fn(params, batch, rng)
    loss, (metrics, _) = task.loss_fn(params, batch, rng, task.init_model_state(params))
    return loss, metrics


@pytest.mark.parametrize(
    "momentum,tokenizer",  # the default; ITC on the batch alone, with a BERT tokenizer.json
    [(0.995, "scenes"), (0.0, "bert")],
)
def test_loss_is_the_sum_of_the_three_logged_objectives(smoke, momentum, tokenizer, request):
    config, _, params = smoke
    config = config.copy_and_resolve_references()
    config.model.momentum = momentum
    if tokenizer == "bert":  # the scenes' captions in WordPiece: its table, its rows
        config.data.tokenizer = str(request.getfixturevalue("bert_tokenizer_dir"))
        config.data.max_len = 16
    task = build_task(config, None)
    if tokenizer == "bert":
        params = nn.unbox(jax.jit(task.init)(jax.random.key(0)))
        assert params["text"]["word"]["embedding"].shape[0] == 602  # + [DEC], [ENC]
    assert (task.init_model_state is None) == (momentum == 0)
    batch = next(task.train_data(0, 1))

    def loss(p):
        return _loss(task, p, batch, jax.random.key(1))

    (value, m), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    np.testing.assert_allclose(value, m["itc"] + m["itm"] + m["lm"], rtol=1e-6)
    assert all(np.isfinite(v) for v in m.values())
    assert np.isfinite(sum(float(np.abs(g).sum()) for g in jax.tree.leaves(grads)))


def test_momentum_distillation_fills_the_queue_and_moves_the_momentum_model(smoke):
    config, _, params = smoke
    config = config.copy_and_resolve_references()
    config.model.update(momentum=0.995, queue_size=32, alpha=0.4, alpha_ramp_steps=2)
    task = build_task(config, None)
    state = task.init_model_state(params)
    loss_fn = jax.jit(task.loss_fn)
    data_iter = task.train_data(0, 1)
    for step in range(3):  # the third batch overwrites the first slots (queue: two batches)
        batch = next(data_iter)
        trained = jax.tree.map(lambda p: p + 0.01 * (step + 1), params)
        loss, (metrics, state) = loss_fn(trained, batch, jax.random.key(step), state)
        assert np.isfinite(float(loss)) and float(loss) == pytest.approx(
            float(metrics["itc"] + metrics["itm"] + metrics["lm"]), rel=1e-6
        )
        assert float(metrics["alpha"]) == pytest.approx(0.4 * min(1, step / 2))  # BLIP's ramp
    s = jax.device_get(state)
    assert int(s["seen"]) == 3
    assert int(s["ptr"]) == (3 * 16) % 32
    np.testing.assert_array_equal(s["ids_queue"][:16], batch["text"])  # the newest batch
    assert (s["ids_queue"][:, 0] == scenes_layout(12).first_id).all()  # every slot written
    np.testing.assert_allclose(np.linalg.norm(s["image_queue"], axis=-1), 1.0, rtol=1e-4)
    moved = jax.tree.map(lambda m, p: float(np.abs(m - p).max()), s["params_m"], params)
    assert 0 < max(jax.tree.leaves(moved)) < 0.01  # an EMA of the trained params, not a copy
    config.model.queue_size = 24
    with pytest.raises(ValueError, match="queue_size=24"):
        build_task(config, None)


def test_capfilt_on_a_toy_model_writes_a_dataset_the_file_config_trains_on(smoke, tmp_path):
    config, _, params = smoke
    layout = scenes_layout(config.data.max_len)
    model = make_model(config, layout)
    images, captions = data.split("train", 16, config.data.image_size, 0)
    noisy, corrupted = data.corrupt(captions, 0.5, 0)
    captioner = Captioner(model, layout, config.mesh.rules)
    scorer = Scorer(model, layout, config.mesh.rules, 8)
    args = (captioner, scorer, params, images, noisy, jax.random.key(0))
    res = capfilt.capfilt(*args, threshold=0.5, batch=8)
    assert len(res.synthetic) == 16 and res.p_original.shape == (16,)
    assert ((res.p_original >= 0.5) == res.keep_original).all()
    new_images, new_caps = res.dataset(images, noisy)
    assert len(new_images) == len(new_caps) == res.keep_original.sum() + res.keep_synthetic.sum()
    report = capfilt.noise_report(res, corrupted)
    assert report["clean_kept"] == pytest.approx(res.keep_original[~corrupted].mean())
    assert ((res.p_synthetic >= 0.5) == res.keep_synthetic).all()
    assert all(isinstance(t, str) for t in res.synthetic)

    path = os.path.join(tmp_path, "boot.npz")
    data.save_pairs(path, new_images, new_caps)
    config.data.name, config.data.path = "file", path
    config.train.batch_size = 4
    task = build_task(config, None)
    batch = next(task.train_data(0, 1))
    assert batch["image"].shape[0] == 4 and np.isfinite(
        _loss(task, params, batch, jax.random.key(2))[0]
    )


def test_a_pairs_file_that_is_not_save_pairs_output_is_named(tmp_path):
    from jaxmodels.models.blip.task import train_pairs

    config = load_config("experiments/blip/pretrain.py:smoke")
    config.data.name = "file"
    bad = {
        "image.npz": dict(image=np.zeros((2, 8, 8, 3), np.uint8), captions=np.array(["a", "b"])),
        "short.npz": dict(images=np.zeros((2, 8, 8, 3), np.uint8), captions=np.array(["a"])),
        "big.npz": dict(images=np.zeros((2, 20, 20, 3), np.uint8), captions=np.array(["a", "b"])),
    }
    for name, arrays in bad.items():
        np.savez(tmp_path / name, **arrays)
    (tmp_path / "cut.npz").write_bytes((tmp_path / "short.npz").read_bytes()[:100])
    for name, match in [
        ("image.npz", r"image.npz' has no 'images' array \(it holds \['image', 'captions'\]\)"),
        ("short.npz", r"short.npz': 2 images but 1 captions"),
        ("cut.npz", r"cut.npz' is not a readable .npz file"),
        ("big.npz", r"big.npz' holds uint8 images of shape \(20, 20, 3\), but config.data.im"),
    ]:
        config.data.path = str(tmp_path / name)
        with pytest.raises(ValueError, match=match):
            train_pairs(config)


def test_sizes_the_model_cannot_take_are_refused_before_compiling():
    config = load_config("experiments/blip/pretrain.py:smoke")
    config.data.image_size = 20  # patch 8
    with pytest.raises(ValueError, match="image_size=20 is not a multiple of config.model.image.p"):
        build_task(config, None)
    config.data.image_size, config.model.text.max_len = 16, 12  # rows: 12 + "a picture of"
    with pytest.raises(ValueError, match=r"text.max_len=12 \(the position table\) < 15"):
        build_task(config, None)
