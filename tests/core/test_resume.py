"""Checkpoint errors that lose nothing, one writer per workdir, clean metrics on resume, and the
up-front checks that name the key or file (in-process, MLP smoke config)."""

import contextlib
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxmodels.config import load_config, validate
from jaxmodels.train import checkpoint as checkpoint_lib
from jaxmodels.train import lock as lock_lib
from jaxmodels.train import loop, paths, resume
from jaxmodels.train.checkpoint import Checkpointer
from jaxmodels.train.metrics import MetricsWriter

SMOKE = "experiments/mlp/digits.py:smoke"  # 8 steps, checkpoints at 4 and 8


def _config(**train):
    config = load_config(SMOKE)
    config.train.update(train)
    return config


def _lines(path):
    return path.read_text().splitlines()


def _tree(root):
    """Every file under ``root`` with its size and mtime: equal trees mean nothing was touched."""
    out = {}
    for d, _, files in os.walk(root):
        for name in files:
            st = os.stat(os.path.join(d, name))
            out[os.path.relpath(os.path.join(d, name), root)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished smoke run, copied fresh for each test that changes it."""
    wd = tmp_path_factory.mktemp("trained")
    loop.train(_config(), str(wd))
    return wd


@pytest.fixture
def workdir(trained, tmp_path):

    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


def test_config_change_is_refused_before_touching_checkpoints(workdir, capsys):
    before = _tree(workdir)
    config = _config()
    config.model.hidden = 48
    with pytest.raises(resume.ConfigMismatchError, match=r"config.model.width: 32 -> 48"):
        loop.train(config, str(workdir))
    # Another family's config on this workdir: eval refuses too, naming the family key.
    lm = load_config("experiments/lm/rope_lm.py:smoke")
    with pytest.raises(resume.ConfigMismatchError, match=r"config.family: 'mlp' -> 'lm'"):
        loop.evaluate(lm, str(workdir))
    # The override accepts the config change, but the parameter shapes cannot load: the error
    # names the first differing parameter and still nothing is touched.
    with pytest.raises(resume.ConfigMismatchError, match=r"params/Dense_0/bias .*\(32,\).*\(48,\)"):
        loop.train(config, str(workdir), allow_config_change=True)
    assert _tree(workdir) == before
    assert not (workdir / "checkpoints_corrupt").exists()
    # Allowed keys change freely and are logged.
    capsys.readouterr()
    loop.train(_config(steps=10), str(workdir))
    out = capsys.readouterr().out
    assert "config.train.steps: 8 -> 10" in out and "resumed from step 8" in out


def test_eval_and_sample_only_read(workdir, tmp_path, capsys):
    missing = tmp_path / "missing"
    for fn in (loop.evaluate, loop.sample):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            fn(_config(), str(missing))
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint under"):
        loop.evaluate(_config(), str(empty))
    assert os.listdir(empty) == []
    # An unreadable newest checkpoint is left in place; eval uses the previous one.
    _garble(workdir / "checkpoints" / "8")
    out = loop.evaluate(_config(), str(workdir))
    assert "eval_accuracy" in out
    assert "left in place" in capsys.readouterr().out
    assert (workdir / "checkpoints" / "8").exists() and not (
        workdir / "checkpoints_corrupt"
    ).exists()


def _garble(step_dir):
    for root, _, files in os.walk(step_dir / "state"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")


def _state(seed=0):
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": np.zeros(3, np.float32)}


def _saved(tmp_path, steps=(1, 2)):
    ckpt = Checkpointer(str(tmp_path), keep=5, use_async=False)
    for s in steps:
        ckpt.save(s, jax.tree.map(lambda x: x + s, _state()))
    ckpt.wait()
    return Checkpointer(str(tmp_path), keep=5, use_async=False)


def test_transient_errors_are_retried_then_stop_without_moving(tmp_path, monkeypatch):
    ckpt = _saved(tmp_path)
    monkeypatch.setattr(checkpoint_lib, "BACKOFF_S", 0.0)
    real, calls = Checkpointer._restore_step, []

    def flaky(self, *args):  # a store that times out twice, then answers
        calls.append(args[0])
        if len(calls) <= 2:
            raise TimeoutError("read timed out")
        return real(self, *args)

    monkeypatch.setattr(Checkpointer, "_restore_step", flaky)
    state, step = ckpt.restore(_state())
    assert step == 2 and calls == [2, 2, 2]
    np.testing.assert_array_equal(state["w"], _state()["w"] + 2)

    def down(self, *args):
        raise ValueError("UNAVAILABLE: connection reset") from ConnectionResetError(104, "reset")

    monkeypatch.setattr(Checkpointer, "_restore_step", down)
    before = _tree(tmp_path)
    with pytest.raises(checkpoint_lib.CheckpointReadError, match="failed 5 times") as e:
        ckpt.restore(_state())
    assert isinstance(e.value.__cause__, ValueError)  # the cause is kept
    assert _tree(tmp_path) == before and ckpt.steps() == [1, 2]


@pytest.mark.parametrize("damage", ["bad_bytes", "partial_write", "no_metadata"])
def test_unreadable_checkpoint_is_set_aside_and_the_previous_used(tmp_path, damage):
    ckpt = _saved(tmp_path)
    step_dir = tmp_path / "checkpoints" / "2"
    if damage == "bad_bytes":
        _garble(step_dir)
    elif damage == "partial_write":
        for root, _, files in os.walk(step_dir / "state" / "d"):
            for name in files:
                os.remove(os.path.join(root, name))
    else:
        os.remove(step_dir / "state" / "_METADATA")
    state, step = ckpt.restore(_state())
    assert step == 1
    np.testing.assert_array_equal(state["w"], _state()["w"] + 1)
    assert (tmp_path / "checkpoints_corrupt" / "2").is_dir() and ckpt.steps() == [1]


def _rewrite(workdir, step, edit, monkeypatch):
    """Replaces checkpoint ``step`` of a smoke run by ``edit(state)``, saved as the code saves
    except that a non-finite state is written (as storage damage or an older version would)."""
    run = loop.build(_config(), str(workdir))
    state = edit(run.checkpointer._restore_step(step, run.abstract_state, None))
    shutil.rmtree(workdir / "checkpoints" / str(step))
    ckpt = Checkpointer(str(workdir), keep=3, use_async=False)
    with monkeypatch.context() as m:
        digest = checkpoint_lib.digest
        m.setattr(
            checkpoint_lib,
            "digest",
            lambda s: {k: (d, True, c) for k, (d, _, c) in digest(s).items()},
        )
        ckpt.save(step, state)
    ckpt.wait()


def test_a_nonfinite_state_is_never_saved(tmp_path):
    """The train step tests the loss and gradient norm only (``step.update_is_finite``), so the
    save, which reads the whole state for its checksums anyway, refuses one that holds Inf."""
    ckpt = Checkpointer(str(tmp_path), keep=3, use_async=False)
    with pytest.raises(checkpoint_lib.NonFiniteStateError, match=r"b holds NaN or Inf .* step 3"):
        ckpt.save(3, {"a": np.ones(3, np.float32), "b": np.array([1.0, np.inf], np.float32)})
    assert ckpt.steps() == []


def test_nonfinite_adam_moment_is_set_aside_by_train_and_skipped_by_eval(
    workdir, capsys, monkeypatch
):
    """The newest checkpoint holds a NaN Adam moment (a flipped exponent bit): it used to
    restore, and every rerun then stopped at its first step whatever the learning rate."""

    def nan_moment(state):
        def edit(path, x):
            hit = jax.tree_util.keystr(path).endswith(".mu['Dense_0']['kernel']")
            return x.at[0, 0].set(np.nan) if hit else x

        return state.replace(opt_state=jax.tree_util.tree_map_with_path(edit, state.opt_state))

    _rewrite(workdir, 8, nan_moment, monkeypatch)
    capsys.readouterr()
    loop.evaluate(_config(), str(workdir))  # read-only: the previous checkpoint, nothing moved
    out = capsys.readouterr().out
    assert "checkpoints/8 could not be restored" in out and "mu/Dense_0/kernel holds NaN" in out
    assert "left in place" in out and "step 4:" in out
    assert not (workdir / "checkpoints_corrupt").exists()
    loop.train(_config(steps=10), str(workdir))
    out = capsys.readouterr().out
    assert "mu/Dense_0/kernel holds NaN" in out and "resumed from step 4" in out
    assert (workdir / "checkpoints_corrupt" / "8").is_dir()
    assert Checkpointer(str(workdir), keep=3).steps()[-1] == 10


def test_a_finite_bit_flip_is_caught_by_the_checksum(tmp_path):
    """Storage keeps no checksum: one flipped bit in the data file loads as a different, finite
    number. The checksum saved beside the state catches it."""
    big = {"w": np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)}
    ckpt = Checkpointer(str(tmp_path), keep=5, use_async=False)
    for step in (1, 2):
        ckpt.save(step, {"w": big["w"] + step})
    ckpt.wait()
    state_dir = tmp_path / "checkpoints" / "2" / "state"
    data = max((f for f in state_dir.rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
    original = data.read_bytes()
    for i in range(len(original) // 2, len(original) // 2 + 16):
        flipped = bytearray(original)
        flipped[i] ^= 1
        data.write_bytes(bytes(flipped))
        raw = ckpt._manager.restore(2)["state"]["w"]  # what storage alone gives
        if (raw != big["w"] + 2).any() and np.isfinite(raw).all():
            break
    else:
        pytest.fail("no single-bit flip loaded as finite values")
    state, step = ckpt.restore(big)
    assert step == 1
    np.testing.assert_array_equal(state["w"], big["w"] + 1)
    assert (tmp_path / "checkpoints_corrupt" / "2").is_dir() and ckpt.steps() == [1]


def test_nonfinite_update_is_never_applied_nor_saved(tmp_path, capsys):
    """SGD at 1e12: step 1 leaves huge but finite weights; step 2's gradient norm overflows."""
    config = _config(steps=12, checkpoint_every=1, log_every=1, eval_every=0)
    config.train.update(optimizer="sgd", learning_rate=1e12, warmup_steps=0, grad_clip=0.0)
    with pytest.raises(loop.NonFiniteLossError, match=r"last finite checkpoint is step (\d+)") as e:
        loop.train(config, str(tmp_path))
    last = int(str(e.value).split("last finite checkpoint is step ")[1].split(" ")[0])
    ckpt = Checkpointer(str(tmp_path), keep=3, read_only=True)
    assert ckpt.steps()[-1] == last
    run = loop.build(config, str(tmp_path), read_only=True)
    for step in ckpt.steps():  # every saved state is finite
        state = run.checkpointer._restore_step(step, run.abstract_state, None)
        assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(state)))
    rows = [json.loads(line) for line in _lines(tmp_path / "metrics.jsonl")]  # valid JSON
    assert rows
    # A rerun (a changed learning rate needs the override flag) resumes from the named step.
    config.train.learning_rate = 1e-3
    capsys.readouterr()
    with contextlib.suppress(loop.NonFiniteLossError):  # sgd at 1e12 left huge weights behind
        loop.train(config, str(tmp_path), allow_config_change=True)
    assert f"resumed from step {last}" in capsys.readouterr().out


def test_metrics_drop_stale_lines_on_resume_and_stay_json(tmp_path):
    writer = MetricsWriter(str(tmp_path))
    for step in range(1, 7):
        writer.write(step, {"loss": float(step), "grad_norm": np.float32(np.nan)})
    writer.write(7, {"loss": np.inf})
    writer.close()
    rows = [json.loads(line) for line in _lines(tmp_path / "metrics.jsonl")]
    assert rows[0] == {"step": 1, "loss": 1.0, "grad_norm": None}
    assert rows[-1] == {"step": 7, "loss": None}
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 8, "lo')  # a line cut by a kill
    MetricsWriter(str(tmp_path), resume_step=4).close()
    assert [json.loads(line)["step"] for line in _lines(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]


def test_a_broken_config_json_is_named_and_written_whole_only_when_it_changes(workdir, capsys):
    """config.json was rewritten in place on every start: one cut short by a full disk or a kill
    made every rerun fail with a bare JSON error naming no file."""
    saved = workdir / "config.json"
    stat = saved.stat()
    loop.train(_config(), str(workdir))  # nothing to do, same config: not rewritten
    assert (saved.stat().st_ino, saved.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    text = saved.read_text()
    with pytest.raises(UnicodeEncodeError):  # a write that fails half-way ...
        paths.write_text(saved, text + "\ud800")
    assert saved.read_text() == text  # ... leaves the old file whole
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".")] == []
    saved.write_text("")
    before = _tree(workdir)
    for fn in (loop.train, loop.evaluate):
        with pytest.raises(
            ValueError, match=rf"{saved} is not the run's saved config .*mv {saved}"
        ):
            fn(_config(), str(workdir))
    assert _tree(workdir) == before


def test_a_full_disk_names_the_file_and_errno(tmp_path, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(lock_lib.WorkdirLock(paths.path(tmp_path)).path), "write_text", full)
    match = rf"cannot write {tmp_path}/train.lock: No space left on device \(errno 28 ENOSPC\)"
    with pytest.raises(loop.USER_ERRORS, match=match):  # it was a raw OSError, and a traceback
        loop.train(_config(), str(tmp_path))
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(loop.USER_ERRORS, match=rf"cannot write {tmp_path}/config.json: No space"):
        paths.write_text(paths.path(tmp_path) / "config.json", "{}")
    assert os.listdir(tmp_path) == []


def test_workdir_lock_names_the_holder_and_frees_when_it_dies(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_lib, "CONFIRM_S", 0.0)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        info = {"host": socket.gethostname(), "pid": holder.pid, "heartbeat": time.time()}
        (tmp_path / lock_lib.NAME).write_text(json.dumps(info))
        with pytest.raises(lock_lib.WorkdirLockedError, match=rf"pid {holder.pid} on host"):
            loop.train(_config(), str(tmp_path))
        assert not (tmp_path / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    with lock_lib.WorkdirLock(tmp_path / "x"):  # the holder died: the lock is free at once
        pass
    lock_lib.WorkdirLock(tmp_path).acquire()
    assert json.loads((tmp_path / lock_lib.NAME).read_text())["pid"] == os.getpid()
    # Another host: refused while its heartbeat is fresh, taken over once it is stale.
    other = {"host": "other-vm", "pid": 1, "heartbeat": time.time()}
    (tmp_path / lock_lib.NAME).write_text(json.dumps(other))
    with pytest.raises(lock_lib.WorkdirLockedError, match="pid 1 on host other-vm"):
        lock_lib.WorkdirLock(tmp_path).acquire()
    other["heartbeat"] -= lock_lib.STALE_S + 1
    (tmp_path / lock_lib.NAME).write_text(json.dumps(other))
    lock = lock_lib.WorkdirLock(tmp_path)
    lock.acquire()
    lock.release()
    assert not (tmp_path / lock_lib.NAME).exists()


def test_up_front_checks_name_the_key(tmp_path):
    for lr in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="config.train.learning_rate"):
            validate(_config(learning_rate=lr))
    with pytest.raises(ValueError, match=r"config.train.batch_size=12 .* 8 devices"):
        loop.train(_config(batch_size=12), str(tmp_path / "a"))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        loop.train(_config(), str(a_file))
    one_byte = tmp_path / "one.txt"
    one_byte.write_text("a")
    lm = load_config("experiments/lm/rope_lm.py:smoke")
    lm.data.path = str(one_byte)
    with pytest.raises(ValueError, match=r"config.data.path='.*one.txt' is too short"):
        loop.train(lm, str(tmp_path / "c"))
    config = _config()
    config.data.holdout = 0.005  # 9 held-out digits: fewer than one batch of 16
    with pytest.raises(ValueError, match="eval data yields no batch.*config.train.batch_size=16"):
        loop.train(config, str(tmp_path / "b"))
    assert not (tmp_path / "b" / "checkpoints").exists() or not os.listdir(
        tmp_path / "b" / "checkpoints"
    )
