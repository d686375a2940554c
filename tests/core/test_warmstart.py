"""``config.init.workdir``: a fresh run starts from another run's parameters (or its EMA, or
some of its sub-trees), reading that run's folder without changing a byte of it; a resumed run
keeps its own checkpoint. (MLP smoke config, 8 fake devices.)"""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from jaxmodels.config import load_config, parse_workdir_map, validate
from jaxmodels.train import loop, warmstart
from jaxmodels.train.checkpoint import Checkpointer

SMOKE = "experiments/mlp/digits.py:smoke"  # 8 steps, checkpoints at 4 and 8


def _config(**init):
    c = load_config(SMOKE)
    c.train.eval_every = 0
    c.init.update(init)
    return c


def _saved(step_dir, tree: str):
    """That run's ``tree`` read by orbax directly (the reference)."""
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer().restore(step_dir / "state")[tree]


def _fresh(config, workdir):
    """The state a run of ``config`` starts from in the empty ``workdir``."""
    run = loop.build(config, str(workdir))
    state, step = loop.restore_or_init(run)
    assert step == 0
    return jax.device_get(state)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished run that keeps an EMA (so its params and EMA differ)."""
    wd = tmp_path_factory.mktemp("source")
    config = _config()
    config.train.ema_halflife_examples = 64.0
    loop.train(config, str(wd))
    return wd


def _equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_a_fresh_run_starts_from_that_runs_params_or_ema(source, tmp_path, capsys, snapshot):
    before = snapshot(source)
    newest = source / "checkpoints" / "8"
    ema = _fresh(_config(workdir=str(source)), tmp_path / "auto")  # auto: the EMA it kept
    _equal(ema.params, _saved(newest, "ema_params"))
    assert "6 parameter arrays from" in capsys.readouterr().out
    plain = _fresh(_config(workdir=str(source), workdir_params="params"), tmp_path / "plain")
    _equal(plain.params, _saved(newest, "params"))
    assert int(plain.step) == 0 and plain.ema_params is None
    assert not np.allclose(plain.params["Dense_0"]["kernel"], ema.params["Dense_0"]["kernel"])
    # One checkpoint named: DIR/checkpoints/STEP; the new run's EMA starts at its params.
    older = _config(workdir=str(source / "checkpoints" / "4"), workdir_params="params")
    older.train.ema_halflife_examples = 32.0
    state = _fresh(older, tmp_path / "older")
    _equal(state.params, _saved(source / "checkpoints" / "4", "params"))
    _equal(state.ema_params, state.params)
    assert snapshot(source) == before


def test_a_resumed_run_keeps_its_own_checkpoint(source, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    config = _config(workdir=str(tmp_path / "gone"))  # never read: the run resumes
    config.train.ema_halflife_examples = 64.0
    run = loop.build(config, str(run_dir))
    state, step = loop.restore_or_init(run)
    assert step == 8
    _equal(jax.device_get(state.params), _saved(source / "checkpoints" / "8", "params"))
    assert not (tmp_path / "gone").exists()


def test_only_the_mapped_subtrees_come_from_that_run(source, tmp_path):
    """A 3-layer MLP takes its first and last layers, and its third from the 2-layer run's
    second (``here=there``); its second layer keeps the fresh initialisation. One sub-tree
    of that run may fill two of this run's."""
    deeper = _config(workdir_params="params")
    deeper.model.depth = 3
    fresh = _fresh(deeper, tmp_path / "fresh")
    deeper.init.workdir = str(source)
    deeper.init.workdir_map = "Dense_0=Dense_0, Dense_2=Dense_1, Dense_3=Dense_2"
    mapped = _fresh(deeper, tmp_path / "mapped").params
    saved = _saved(source / "checkpoints" / "8", "params")
    for here, there in parse_workdir_map(deeper.init.workdir_map):
        _equal(mapped[here], saved[there])
    _equal(mapped["Dense_1"], fresh.params["Dense_1"])
    # One sub-tree of that run may fill several of this run's.
    deeper.init.workdir_map = "Dense_1=Dense_1,Dense_2=Dense_1"
    twice = _fresh(deeper, tmp_path / "twice").params
    _equal([twice["Dense_1"], twice["Dense_2"]], [saved["Dense_1"]] * 2)
    _equal([twice["Dense_0"], twice["Dense_3"]], [fresh.params["Dense_0"], fresh.params["Dense_3"]])
    # Without the map, every differing parameter is named and nothing is read.
    deeper.init.workdir_map = ""
    with pytest.raises(ValueError, match=r"(?s)4 differ.*Dense_3/kernel: only in this run"):
        _fresh(deeper, tmp_path / "unmapped")


def test_shape_mismatch_names_every_differing_parameter(source, tmp_path):
    wide = _config(workdir=str(source))
    wide.model.width = 48
    with pytest.raises(ValueError) as e:
        _fresh(wide, tmp_path / "wide")
    msg = str(e.value)
    assert "config.init.workdir=" in msg
    assert "Dense_0/kernel: that run (64, 32), this run (64, 48)" in msg
    assert "Dense_2/kernel: that run (32, 10), this run (48, 10)" in msg
    assert "workdir_map" in msg and "Nothing was read" in msg


def test_bad_sources_are_named_and_nothing_is_created(source, tmp_path):
    typo = tmp_path / "typo"
    with pytest.raises(FileNotFoundError, match=r"config.init.workdir='.*typo' does not exist"):
        _fresh(_config(workdir=str(typo)), tmp_path / "a")
    assert not typo.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no finished checkpoint under .*empty"):
        _fresh(_config(workdir=str(empty)), tmp_path / "b")
    assert os.listdir(empty) == []
    with pytest.raises(ValueError, match=r"cannot read the 'x' parameters; choose one of"):
        _fresh(_config(workdir=str(source), workdir_params="x"), tmp_path / "c")
    plain = tmp_path / "plain"  # a run that kept no EMA
    params = {"w": np.ones((2, 3), np.float32)}
    ckpt = Checkpointer(str(plain), keep=1, use_async=False)
    ckpt.save(1, {"step": np.int32(1), "params": params, "ema_params": None})
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    with pytest.raises(ValueError, match=r"k=.*checkpoints/1 holds no EMA parameters"):
        warmstart.read_params(str(plain), target, use="ema", key="k")
    _equal(warmstart.read_params(str(plain), target, key="k"), params)  # auto: the params
    with pytest.raises(ValueError, match="init.hf and config.init.workdir are both set"):
        c = load_config("experiments/lm/rope_lm.py:smoke")
        c.init.update(hf="/a", workdir="/b")
        validate(c)
    for bad in ("a=b,a/c=d", "nothing", "=x,y=z"):
        with pytest.raises(ValueError, match="config.init.workdir_map"):
            parse_workdir_map(bad)


def test_an_unreadable_newest_checkpoint_is_named_not_replaced(
    source, tmp_path, snapshot, garble_state
):
    """No silent fallback: the error names the checkpoint and the older one to name instead;
    the folder is left exactly as it was (no checkpoints_corrupt, nothing moved)."""
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    garble_state(broken / "checkpoints" / "8")
    before = snapshot(broken)
    with pytest.raises(warmstart.UnreadableCheckpointError) as e:
        _fresh(_config(workdir=str(broken)), tmp_path / "a")
    msg = str(e.value)
    assert f"checkpoint {broken / 'checkpoints' / '8'} could not be read" in msg
    assert f"--config.init.workdir={broken / 'checkpoints' / '4'} (it has 4)" in msg
    assert snapshot(broken) == before
    state = _fresh(_config(workdir=str(broken / "checkpoints" / "4")), tmp_path / "b")
    _equal(state.params, _saved(source / "checkpoints" / "4", "ema_params"))
    assert snapshot(broken) == before


def test_a_source_checkpoint_holding_nan_is_named_not_used(tmp_path, snapshot, monkeypatch):
    """Read-only like eval: verified as the trainer verifies its own restore, never moved. (The
    trainer never saves NaN; the checkpoint stands for one written by another program, or whose
    values went bad before their checksums were taken.)"""
    from jaxmodels.train import checkpoint

    real = checkpoint.digest
    monkeypatch.setattr(
        checkpoint, "digest", lambda s: {k: (d, True, x) for k, (d, _, x) in real(s).items()}
    )
    plain = tmp_path / "plain"
    w = np.ones((2, 3), np.float32)
    ckpt = Checkpointer(str(plain), keep=2, use_async=False)
    for step, value in ((1, w), (2, np.where(np.eye(2, 3) > 0, np.nan, w))):
        ckpt.save(step, {"step": np.int32(step), "params": {"w": value}, "ema_params": None})
    target = {"w": jax.ShapeDtypeStruct(w.shape, w.dtype)}
    before = snapshot(plain)
    with pytest.raises(warmstart.UnreadableCheckpointError) as e:
        warmstart.read_params(str(plain), target, key="config.init.workdir")
    assert "checkpoints/2 could not be read (CorruptCheckpointError: params/w holds NaN" in str(
        e.value
    )
    assert f"--config.init.workdir={plain / 'checkpoints' / '1'}" in str(e.value)
    assert snapshot(plain) == before


def test_a_run_saved_before_the_init_keys_resumes_without_the_flag():
    """Keys added to base_config since a run was saved are no change at their defaults."""
    import json

    from jaxmodels.train import resume

    config = _config()
    saved = json.loads(config.to_json_best_effort())
    del saved["init"]
    lines = resume.check_config(saved, config, allow=False, where="config.json")
    assert "config.init.workdir: '<absent>' -> ''" in lines
    config.init.workdir = "/elsewhere"
    with pytest.raises(resume.ConfigMismatchError, match=r"init.workdir: '<absent>' -> '/else"):
        resume.check_config(saved, config, allow=False, where="config.json")


def test_eval_with_no_checkpoint_evaluates_the_start(source, tmp_path, capsys, snapshot):
    """``jaxmodels eval`` on a workdir without a checkpoint evaluates init.workdir's parameters
    at step 0 (as it would an imported checkpoint's), creating the workdir for the metrics and
    writing nothing else; a workdir with a checkpoint evaluates that one. (Without init an empty
    workdir is refused: test_resume.)"""
    before = snapshot(source)
    copy = tmp_path / "copy"
    shutil.copytree(source, copy)
    config = _config()
    config.train.ema_halflife_examples = 64.0  # as the source was trained
    want = loop.evaluate(config, str(copy))  # its newest checkpoint's EMA
    config.init.workdir = str(source)
    out = tmp_path / "out"
    got = loop.evaluate(config, str(out))
    assert got == want and "eval_accuracy" in got
    assert f"no checkpoint in {out}: config.init.workdir=" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["metrics.jsonl", "tensorboard"]
    assert json.loads((out / "metrics.jsonl").read_text()) == {"step": 0, **want}
    assert snapshot(source) == before
    # A workdir with a checkpoint evaluates it, not the start.
    config.init.workdir = str(source / "checkpoints" / "4")
    assert loop.evaluate(config, str(copy), allow_config_change=True) == want
