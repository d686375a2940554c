"""Reflow pieces: couplings reproducible from the seed, straightness 0 for straight flows; the
teacher read from the round before without changing a byte of its folder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.models.diffusion import reflow

MEAN = jnp.array([1.5, -0.5])


def _straight(x, t_B):
    """The exact velocity field from N(0, I) to a point mass at MEAN: paths are straight
    lines x_t = MEAN + t (n - MEAN) travelled at constant speed."""
    return (x - MEAN) / t_B[:, None]


def _swirl(x, t_B):
    return jnp.stack([-x[:, 1], x[:, 0]], -1)  # a rotation: curved paths


def test_straightness_of_a_straight_flow_is_zero():
    noise = jax.random.normal(jax.random.key(0), (64, 2))
    data, s = jax.jit(lambda n: reflow.euler_path(_straight, n, 8))(noise)
    np.testing.assert_allclose(data, jnp.broadcast_to(MEAN, data.shape), atol=1e-5)
    np.testing.assert_allclose(s, 0.0, atol=1e-9)
    const, s_const = reflow.euler_path(lambda x, t: jnp.ones_like(x), noise, 5)
    np.testing.assert_allclose(const, noise - 1, atol=1e-6)
    np.testing.assert_allclose(s_const, 0.0, atol=1e-9)


def test_straightness_of_a_curved_flow_is_positive():
    _, s = reflow.euler_path(_swirl, jax.random.normal(jax.random.key(0), (16, 2)), 32)
    assert np.all(s > 0) and float(s.mean()) > 0.1


def test_couplings_are_reproducible_from_the_seed():
    make = lambda seed: reflow.make_couplings(_swirl, jax.random.key(seed), 32, (2,), 10)
    (n1, x1), (n2, x2), (n3, _) = make(3), make(3), make(4)
    np.testing.assert_array_equal(n1, n2)
    np.testing.assert_array_equal(x1, x2)
    assert not np.allclose(n1, n3)


def test_interpolation_and_one_step():
    noise, data = jnp.ones((3, 2)), jnp.zeros((3, 2))
    x_t, target = reflow.interpolate(noise, data, jnp.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(x_t[:, 0], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(target, noise - data)
    np.testing.assert_allclose(reflow.one_step(lambda x, t: x - data, noise), data)


def test_teacher_couplings_are_chunked_and_reproducible():
    a = reflow.teacher_couplings(_swirl, 5, 10, (2,), 4, chunk=4)
    b = reflow.teacher_couplings(_swirl, 5, 10, (2,), 4, chunk=4)
    assert a["noise"].shape == a["image"].shape == (10, 2)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_allclose(a["image"], reflow.euler_path(_swirl, a["noise"], 4)[0], atol=1e-6)


def test_reflow_and_distillation_losses():
    """The losses regress F(x_t, (M - 1) t) on n - x_0, at t = 1 when distilling."""
    from jaxmodels.models.diffusion.model import DenoiserMLP
    from jaxmodels.models.diffusion.processes import get_process

    net, process = DenoiserMLP(width=8, depth=1), get_process("flow")
    noise, data = jax.random.normal(jax.random.key(0), (2, 6, 2))
    params = net.init(jax.random.key(1), noise, jnp.zeros(6))["params"]
    batch = {"noise": noise, "image": data}
    loss, _ = reflow.make_reflow_loss_fn(net, process, distill=True)(params, batch, None)
    v = net.apply({"params": params}, noise, jnp.full(6, process.M - 1.0))
    np.testing.assert_allclose(loss, jnp.mean((v - (noise - data)) ** 2), rtol=1e-6)
    x0 = reflow.one_step(reflow.velocity_fn(net, process, params), noise)
    np.testing.assert_allclose(x0, noise - v, rtol=1e-6)
    loss_t, _ = reflow.make_reflow_loss_fn(net, process, False)(params, batch, jax.random.key(2))
    assert np.isfinite(loss_t) and loss_t != loss


def test_diffusion_reads_user_images(tmp_path):
    from jaxmodels.config import load_config
    from jaxmodels.data.image_data import image_data
    from jaxmodels.data.images import split_rows
    from jaxmodels.models.diffusion import data
    from jaxmodels.models.diffusion.task import pooled_pixels

    images = np.random.default_rng(0).integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    d = load_config("experiments/diffusion/digits.py:smoke").data
    d.path = str(tmp_path / "x.npy")
    dataset = image_data(d)
    train, held = dataset.split("train"), dataset.split("eval")
    assert dataset.shape == (16, 16, 3) and (len(train), len(held)) == (16, 4)
    x = data.scale(held.images[:], dataset.levels, 0.0)
    np.testing.assert_array_equal(x, images[split_rows(20, "eval", 0.2)] / np.float32(127.5) - 1)
    assert pooled_pixels(x).shape == (4, 8 * 8 * 3)


def _round(teacher=""):
    """The reflow smoke config cut to its bones (two steps, small evaluations)."""
    from jaxmodels.config import load_config

    c = load_config("experiments/diffusion/reflow.py:smoke")
    c.reflow.teacher = str(teacher)
    c.train.update(steps=2, eval_batches=1, sample_at_end=False)
    c.sample.eval_num = 16
    return c


@pytest.fixture(scope="module")
def round_one(tmp_path_factory):
    """A round-1 folder as ``jaxmodels train`` leaves it: config.json and checkpoints at steps
    1 and 2 (different, untrained parameters: what is read matters here, not how good it is)."""
    from jaxmodels.train import loop

    wd, config = tmp_path_factory.mktemp("rf1"), _round()
    run = loop.build(config, str(wd))
    state, _ = loop.restore_or_init(run)
    for step in (1, 2):
        params = jax.tree.map(lambda x, s=step: x + s, state.params)
        run.checkpointer.save(step, state.replace(step=step, params=params))
    run.checkpointer.wait()
    (wd / "config.json").write_text(config.to_json_best_effort(indent=2))
    return wd


def test_round_two_never_changes_its_teacher(round_one, tmp_path, snapshot, garble_state):
    """Round 2's eval and train read the teacher's folder and leave every byte of it as it
    was, also when its newest checkpoint is unreadable (an error naming it, never a silent
    older teacher) and when it is gone (an error naming the key; nothing is created).

    The round-2 run is a copy of round one (same network; ``allow_config_change`` for the new
    teacher key): eval and train open it exactly as a trained round 2, and train, already at
    ``train.steps``, stops after reading the teacher instead of compiling a step."""
    import shutil

    from jaxmodels.train import loop, warmstart

    teacher, student = tmp_path / "rf1", tmp_path / "rf2"
    shutil.copytree(round_one, teacher)
    shutil.copytree(round_one, student)
    config, before = _round(teacher), snapshot(teacher)
    assert "eval_straightness" in loop.evaluate(config, str(student), allow_config_change=True)
    assert loop.train(config, str(student), allow_config_change=True) == {}
    assert snapshot(teacher) == before

    garble_state(teacher / "checkpoints" / "2")
    broken = snapshot(teacher)
    for command in (loop.evaluate, loop.train):
        with pytest.raises(warmstart.UnreadableCheckpointError) as e:
            command(config, str(student), allow_config_change=True)
        assert f"{teacher / 'checkpoints' / '2'} could not be read" in str(e.value)
        assert f"--config.reflow.teacher={teacher / 'checkpoints' / '1'}" in str(e.value)
    assert snapshot(teacher) == broken

    teacher.rename(tmp_path / "moved")
    typo = tmp_path / "rf1_typo"
    for command, path in ((loop.evaluate, teacher), (loop.train, typo)):
        with pytest.raises(FileNotFoundError, match=rf"reflow.teacher='{path}' does not exist"):
            command(_round(path), str(student), allow_config_change=True)
    assert not teacher.exists() and not typo.exists()


def test_the_teacher_is_read_from_the_checkpoint_named(round_one):
    """``DIR/checkpoints/STEP`` reads that checkpoint; the workdir reads the newest."""
    import orbax.checkpoint as ocp

    from jaxmodels.models.diffusion.model import build_network

    config = _round()
    net = build_network(config.model, jnp.float32, 0, (2,))
    for path, step in ((round_one / "checkpoints" / "1", "1"), (round_one, "2")):
        config.reflow.teacher = str(path)
        saved = ocp.StandardCheckpointer().restore(round_one / "checkpoints" / step / "state")
        teacher = reflow.restore_teacher(config, net, (2,))
        jax.tree.map(np.testing.assert_array_equal, teacher, saved["params"])
