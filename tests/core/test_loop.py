"""The shared loop: exact resume after SIGKILL, SIGTERM, NaN stop, corrupt checkpoints, meshes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxmodels.config import REPO_ROOT, load_config
from jaxmodels.parallel import mesh as mesh_lib
from jaxmodels.train import loop, optim
from jaxmodels.train import state as state_lib
from jaxmodels.train.checkpoint import Checkpointer
from jaxmodels.train.lock import WorkdirLockedError

CONFIG = REPO_ROOT / "experiments" / "mlp" / "digits.py"


def _cli(workdir, *overrides, devices=1, env=None, wait=True):
    cmd = [sys.executable, "-m", "jaxmodels", "train", f"--config={CONFIG}:smoke"]
    cmd += [f"--workdir={workdir}", *overrides]
    env = {**os.environ, **(env or {})}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _losses(workdir, unique=False) -> dict[int, float]:
    """The training loss of every logged step; ``unique`` asserts each step appears once."""
    out = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if "loss" in row:
                assert not (unique and row["step"] in out), f"step {row['step']} logged twice"
                out[row["step"]] = row["loss"]
    return out


def _wait_for_step(workdir, step, proc, timeout=120):
    path, start = os.path.join(workdir, "metrics.jsonl"), time.time()
    while time.time() - start < timeout:
        assert proc.poll() is None, proc.stdout.read().decode()
        if os.path.exists(path) and max(_losses(workdir) or [0]) >= step:
            return
        time.sleep(0.02)
    raise TimeoutError(f"step {step} not reached")


LONG = ["--config.train.steps=300", "--config.train.log_every=1", "--config.train.eval_every=0"]


def test_sigkill_then_resume_logs_the_same_losses(tmp_path):
    ref = _cli(tmp_path / "ref", *LONG, "--config.train.checkpoint_every=25")
    assert ref.returncode == 0, ref.stdout + ref.stderr
    proc = _cli(tmp_path / "run", *LONG, "--config.train.checkpoint_every=25", wait=False)
    _wait_for_step(tmp_path / "run", 60, proc)
    proc.kill()
    proc.wait()
    killed_at = max(_losses(tmp_path / "run"))
    assert killed_at < 300
    resumed = _cli(tmp_path / "run", *LONG, "--config.train.checkpoint_every=25")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from step" in resumed.stdout
    want, got = _losses(tmp_path / "ref"), _losses(tmp_path / "run", unique=True)
    assert sorted(got) == sorted(want) == list(range(1, 301))
    np.testing.assert_array_equal([got[s] for s in want], [want[s] for s in want])


def test_ctrl_c_saves_and_a_second_trainer_is_refused(tmp_path):
    proc = _cli(tmp_path, *LONG, "--config.train.steps=100000", wait=False)
    _wait_for_step(tmp_path, 5, proc)
    with pytest.raises(WorkdirLockedError, match=rf"pid {proc.pid} on host {socket.gethostname()}"):
        loop.train(load_config(f"{CONFIG}:smoke"), str(tmp_path))
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, out
    assert "SIGINT received: saved checkpoint" in out and "Traceback" not in out
    steps = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
    assert steps and steps[-1] == max(_losses(tmp_path))
    assert not (tmp_path / "train.lock").exists()


SLOW = """
import os, pathlib, time
from jaxmodels import main
from jaxmodels.models.mlp import task
from jaxmodels.train import checkpoint

def slow(fn):
    def wrapped(*args, **kwargs):
        pathlib.Path(os.environ["REACHED"]).touch()
        time.sleep(120)
    return wrapped

{patch}
main.run()
"""


def _stopped_during_start_up(workdir, signum, patch):
    """Runs the CLI with a start-up phase made slow by ``patch``, signals it there."""
    marker = workdir.parent / "reached"
    script = SLOW.format(patch=patch)
    cmd = [sys.executable, "-c", script, "train", f"--config={CONFIG}:smoke"]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    env["REACHED"] = str(marker)
    proc = subprocess.Popen(
        [*cmd, f"--workdir={workdir}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0]
        time.sleep(0.05)
    proc.send_signal(signum)
    return proc.returncode if proc.wait(60) is None else proc.returncode, proc.stdout.read()


@pytest.mark.parametrize(
    "signum,patch",
    [
        (signal.SIGTERM, "task.build_task = slow(task.build_task)"),
        (signal.SIGINT, "checkpoint.Checkpointer.restore = slow(checkpoint.Checkpointer.restore)"),
    ],
)
def test_signals_during_start_up_stop_cleanly(tmp_path, signum, patch):
    """SIGTERM while the task builds or the state restores used to kill the run (-15) leaving a
    stale lock, and Ctrl-C printed a traceback: now one line and the shell's exit code; the lock
    is released, a workdir the run created is not left behind empty, one that existed is kept."""
    fresh, kept = tmp_path / "fresh", tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    code, out = _stopped_during_start_up(fresh if signum == signal.SIGTERM else kept, signum, patch)
    name = signal.Signals(signum).name
    assert code == 128 + signum, out
    assert f"{name} received during start-up: stopped" in out and "Traceback" not in out
    assert not fresh.exists()
    assert [p.name for p in kept.rglob("*") if p.is_file()] == ["notes.txt"]


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
    config = load_config(f"{CONFIG}:smoke")
    config.train.update(optimizer="sgd", learning_rate=1e12, warmup_steps=0, grad_clip=0.0)
    config.train.update(steps=50, log_every=1, checkpoint_every=1, eval_every=0)
    with pytest.raises(loop.NonFiniteLossError, match=r"step (\d+) was non-finite") as e:
        loop.train(config, str(tmp_path))
    bad = int(str(e.value).split("step ")[1].split(" ")[0])
    saved = Checkpointer(str(tmp_path), keep=3).steps()
    assert saved and max(saved) == bad - 1


def _corrupt(step_dir):
    for root, _, files in os.walk(step_dir / "state"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")


def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path, capsys):
    config = load_config(f"{CONFIG}:smoke")  # 8 steps, checkpoints at 4 and 8
    loop.train(config, str(tmp_path))
    _corrupt(tmp_path / "checkpoints" / "8")
    config.train.steps = 12
    loop.train(config, str(tmp_path))
    out = capsys.readouterr().out
    assert "checkpoints/8 could not be restored" in out and "resumed from step 4" in out
    assert (tmp_path / "checkpoints_corrupt" / "8").exists()
    assert Checkpointer(str(tmp_path), keep=3).steps()[-1] == 12


def _abstract(config, devices):
    mesh = mesh_lib.make_mesh(config.mesh, devices)
    rules = mesh_lib.rules_from_config(config.mesh.rules)
    from jaxmodels.models.mlp import task as mlp

    task = mlp.build_task(config, mesh)
    tx = optim.make_optimizer(config.train)
    with jax.set_mesh(mesh):
        abstract, sh = state_lib.state_shardings(
            task.init, tx, jax.random.key(0), mesh, rules, use_ema=False
        )
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, sh
    )


@pytest.mark.parametrize("saved,restored", [(8, 1), (1, 8)])
def test_restore_onto_another_device_count(tmp_path, saved, restored):
    config = load_config(f"{CONFIG}:smoke")
    config.mesh.update(data=1, fsdp=-1)
    ckpt = Checkpointer(str(tmp_path), keep=2)
    abstract = _abstract(config, jax.devices()[:saved])
    state = jax.tree.map(
        lambda a: jax.device_put(
            np.random.default_rng(0).normal(size=a.shape).astype(a.dtype), a.sharding
        ),
        abstract,
    )
    ckpt.save(3, state)
    ckpt.wait()
    target = _abstract(config, jax.devices()[:restored])
    got, step = Checkpointer(str(tmp_path), keep=2).restore(target)
    assert step == 3
    assert len(got.params["Dense_1"]["kernel"].sharding.device_set) == restored
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(got), jax.device_get(state))


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _two_processes(workdir, *overrides):
    env = {"JAXMODELS_COORDINATOR": f"localhost:{_free_port()}", "JAXMODELS_NUM_PROCESSES": "2"}
    return [
        _cli(
            workdir, *overrides, devices=2, wait=False, env={**env, "JAXMODELS_PROCESS_ID": str(i)}
        )
        for i in range(2)
    ]


def _finish(procs) -> list[str]:
    outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out
    return outs


def test_two_process_preemption_saves_one_step_and_resumes_exactly(tmp_path):
    """SIGTERM to one process only: both agree on the step, save it, exit 0; the rerun resumes
    with the per-step losses of an uninterrupted run."""
    steps = [
        "--config.train.steps=300",
        "--config.train.log_every=1",
        "--config.train.eval_every=0",
    ]
    ref = _finish(_two_processes(tmp_path / "ref", *steps))
    assert "devices=4 processes=2" in ref[0]
    run = tmp_path / "run"
    procs = _two_processes(run, *steps)
    _wait_for_step(run, 5, procs[0])
    procs[1].send_signal(signal.SIGTERM)
    outs = _finish(procs)
    saved = {int(out.split("saved checkpoint at step ")[1].split(",")[0]) for out in outs}
    assert len(saved) == 1 and max(saved) < 300, outs
    assert str(max(saved)) in os.listdir(run / "checkpoints")
    resumed = _finish(_two_processes(run, *steps))
    assert f"resumed from step {max(saved)}" in resumed[0]
    want, got = _losses(tmp_path / "ref"), _losses(run, unique=True)
    assert sorted(got) == sorted(want) == list(range(1, 301))
    np.testing.assert_array_equal([got[s] for s in want], [want[s] for s in want])


def test_cli_rejects_unknown_keys_and_bad_values(tmp_path):
    bad_key = _cli(tmp_path, "--config.train.stepz=3")
    assert bad_key.returncode != 0 and "stepz" in bad_key.stderr
    bad_value = _cli(tmp_path, "--config.train.grad_accum=3")
    assert bad_value.returncode == 1 and "config.train.batch_size=16" in bad_value.stderr
