"""tpu_scripts/*.sh against a fake `gcloud` on PATH that records its argv.

With FAKE_HOME the fake runs `tpu-vm ssh --command` locally (HOME = a fake worker home);
with FAKE_SCP_DIR it copies `scp` sources there; so launch/logs/stop are also checked end to
end on this machine, and remote_setup.sh against stub python/git.
"""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "tpu_scripts"
NAMES = ["create", "setup", "launch", "logs", "stop", "status", "delete"]
BASE = {"JM_PROJECT": "proj", "JM_ZONE": "us-west4-a", "JM_TPU_NAME": "lm"}
FULL = {**BASE, "JM_ACCELERATOR": "v5litepod-16", "JM_RUNTIME": "v2-alpha-tpuv5-lite"}
WHERE = ["--project=proj", "--zone=us-west4-a"]
SSH = ["compute", "tpus", "tpu-vm", "ssh", "lm", *WHERE]

FAKE_GCLOUD = """\
#!PYTHON
import json, os, shutil, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_GCLOUD_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
home, scp_dir = os.environ.get("FAKE_HOME"), os.environ.get("FAKE_SCP_DIR")
if "--format=value(state.state)" in args:
    states = os.environ["FAKE_QR_STATES"].split(",")
    n = sum(1 for line in open(os.environ["FAKE_GCLOUD_LOG"]) if "describe" in line)
    state = states[min(n, len(states)) - 1]
    if state == "ERROR":  # a transient failure of the API
        sys.exit("ERROR: (gcloud) the service is currently unavailable")
    print(state)
elif args[3:4] == ["scp"] and scp_dir:
    for src in [a for a in args[4:] if not a.startswith("-")][:-1]:
        shutil.copy(src, scp_dir)
elif args[3:4] == ["ssh"] and home:
    command = next(a.split("=", 1)[1] for a in args if a.startswith("--command="))
    env = dict(os.environ, HOME=home)
    rc = subprocess.run(["bash", "-c", command], cwd=home, env=env).returncode
    once = os.environ.get("FAKE_SSH_FAIL_ONCE")  # another worker failed to start
    if once and not os.path.exists(once):
        open(once, "w").close()
        rc = 1
    sys.exit(rc)
sys.exit(int(os.environ.get("FAKE_GCLOUD_RC", "0")))
"""


@pytest.fixture
def sh(tmp_path):
    """Runs a tpu script with a clean JM_* environment and the fake gcloud first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "gcloud"
    fake.write_text(FAKE_GCLOUD.replace("PYTHON", sys.executable))
    fake.chmod(0o755)
    log = tmp_path / "gcloud.jsonl"

    def run(name, *args, env=None, check=True):
        base = {k: v for k, v in os.environ.items() if not k.startswith(("JM_", "FAKE_"))}
        base.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_GCLOUD_LOG=str(log))
        base.update(env or {})
        proc = subprocess.run(
            [str(SCRIPTS / f"{name}.sh"), *args], env=base, capture_output=True, text=True
        )
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    def calls():
        lines = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return [json.loads(line) for line in lines]

    run.calls = calls
    return run


@pytest.mark.parametrize("name", NAMES)
def test_help(sh, name):
    proc = sh(name, "--help")
    assert proc.stdout.startswith("Usage: ") and "JM_PROJECT" in proc.stdout
    assert sh.calls() == []


@pytest.mark.parametrize(
    "name,var",
    [("create", v) for v in FULL] + [(n, v) for n in NAMES[1:] for v in BASE],
)
def test_missing_setting_names_the_variable(sh, name, var):
    env = {k: v for k, v in FULL.items() if k != var}
    proc = sh(name, "--", "true", env=env, check=False)
    assert proc.returncode == 2
    assert f"export {var}=" in proc.stderr
    assert sh.calls() == []


def test_bad_option_and_missing_value(sh):
    proc = sh("create", "--bogus", env=FULL, check=False)
    assert proc.returncode == 2 and "unknown option '--bogus'" in proc.stderr
    proc = sh("launch", "--run", env=BASE, check=False)
    assert proc.returncode == 2 and "option --run needs a value" in proc.stderr
    proc = sh("status", "--worker", "w1", env=BASE, check=False)
    assert proc.returncode == 2 and "JM_WORKER" in proc.stderr
    assert sh.calls() == []


def test_create_tpu_vm_flags_override_env(sh):
    sh("create", "--spot", "--zone=europe-west4-b", "--", "--reserved", env=FULL)
    assert sh.calls() == [
        ["compute", "tpus", "tpu-vm", "create", "lm", "--project=proj", "--zone=europe-west4-b"]
        + ["--accelerator-type=v5litepod-16", "--version=v2-alpha-tpuv5-lite", "--spot"]
        + ["--reserved"]
    ]
    sh("create", "--preemptible", "--accelerator", "v4-32", env=FULL)
    assert sh.calls()[0][-3:] == [
        "--accelerator-type=v4-32",
        "--version=v2-alpha-tpuv5-lite",
        "--preemptible",
    ]


def test_create_queued_waits_until_active(sh):
    env = {**FULL, "JM_POLL_SECONDS": "0", "FAKE_QR_STATES": "WAITING_FOR_RESOURCES,ACTIVE"}
    proc = sh("create", "--queued", "--spot", "--wait", env=env)
    describe = ["compute", "tpus", "queued-resources", "describe", "lm-qr", *WHERE]
    assert sh.calls() == [
        ["compute", "tpus", "queued-resources", "create", "lm-qr", *WHERE, "--node-id=lm"]
        + ["--accelerator-type=v5litepod-16", "--runtime-version=v2-alpha-tpuv5-lite", "--spot"],
        describe + ["--format=value(state.state)"],
        describe + ["--format=value(state.state)"],
    ]
    assert "lm-qr: WAITING_FOR_RESOURCES" in proc.stderr


def test_create_queued_reports_failure_and_bad_combinations(sh):
    env = {**FULL, "JM_POLL_SECONDS": "0", "FAKE_QR_STATES": "FAILED"}
    proc = sh("create", "--queued", "--qr-name", "q1", "--wait", env=env, check=False)
    assert proc.returncode == 2 and "queued resource q1 is FAILED" in proc.stderr
    assert sh.calls()[0][4] == "q1"
    for args in (["--queued", "--preemptible"], ["--spot", "--preemptible"], ["--wait"]):
        assert sh("create", *args, env=FULL, check=False).returncode == 2
    assert sh.calls() == []


def test_delete_and_status(sh):
    sh("delete", env=BASE)
    sh("delete", "--queued", "--yes", env=BASE)
    sh("status", "--queued", env={**BASE, "JM_QR_NAME": "q"})
    assert sh.calls() == [
        ["compute", "tpus", "tpu-vm", "delete", "lm", *WHERE],
        ["compute", "tpus", "queued-resources", "delete", "lm-qr", *WHERE, "--quiet", "--force"],
        ["compute", "tpus", "queued-resources", "describe", "q", *WHERE],
        ["compute", "tpus", "tpu-vm", "describe", "lm", *WHERE],
    ]


def test_dry_run_prints_and_runs_nothing(sh):
    proc = sh("delete", "--dry-run", env=BASE)
    assert proc.stdout == "gcloud compute tpus tpu-vm delete lm --project=proj --zone=us-west4-a\n"
    assert sh.calls() == []


def _git(cwd, *args):
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_setup_copies_checkout_to_all_workers(sh, tmp_path):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("[project]\n")
    (repo / ".gitignore").write_text("*.ckpt\n")
    (repo / "big.ckpt").write_text("ignored")
    (repo / "pkg" / "new.py").write_text("untracked, not ignored")
    _git(repo, "init", "-q")
    _git(repo, "add", "pyproject.toml", ".gitignore")
    worker = tmp_path / "worker"
    worker.mkdir()
    sh("setup", "--local", str(repo), env={**BASE, "FAKE_SCP_DIR": str(worker)})
    scp, ssh = sh.calls()
    assert scp[:4] == ["compute", "tpus", "tpu-vm", "scp"]
    names = ["jm_remote_setup.sh", "jm_constraints.txt", "jm_src.tar.gz"]
    assert [Path(p).name for p in scp[4:7]] == names
    assert scp[7:] == ["lm:", *WHERE, "--worker=all"]
    assert (worker / "jm_constraints.txt").read_text() == (SCRIPTS / "constraints.txt").read_text()
    with tarfile.open(worker / "jm_src.tar.gz") as tar:
        assert sorted(tar.getnames()) == [".gitignore", "pkg/new.py", "pyproject.toml"]
    assert ssh[:-1] == [*SSH, "--worker=all"]
    assert ssh[-1] == (
        "--command=bash jm_remote_setup.sh --tarball jm_src.tar.gz --dir jaxmodels "
        "--venv jm-venv --python 3.11 --jax 'jax[tpu]' --extras tpu "
        "--pip 'gcsfs google-cloud-storage' --constraints jm_constraints.txt --logs jm-logs"
    )


def test_setup_from_git_on_some_workers(sh):
    args = ["--git", "https://example.com/jm.git", "--branch", "tpu", "--worker", "0-1"]
    sh("setup", *args, "--fresh", env={**BASE, "JM_VENV": "/opt/venv", "JM_PIP_EXTRA": ""})
    scp, ssh = sh.calls()
    assert Path(scp[4]).name == "jm_remote_setup.sh" and scp[6:] == ["lm:", *WHERE, "--worker=0-1"]
    assert ssh == [
        *SSH,
        "--worker=0-1",
        "--command=bash jm_remote_setup.sh --git https://example.com/jm.git --branch tpu "
        "--dir jaxmodels --venv /opt/venv --python 3.11 --jax 'jax[tpu]' --extras tpu "
        "--pip '' --constraints jm_constraints.txt --logs jm-logs --fresh",
    ]


def test_launch_command_string(sh):
    env = {**BASE, "JAX_TRACEBACK_FILTERING": "off"}
    args = ["--run", "r1", "--env", "LIBTPU_INIT_ARGS=--a=1 --b"]
    args += ["--env", "JAX_TRACEBACK_FILTERING", "--", "jaxmodels", "train", "--config"]
    args += ["experiments/lm/rope_lm.py", "--workdir", "gs://b/run", "--config.name=it's"]
    sh("launch", *args, env=env)
    [call] = sh.calls()
    assert call[:-1] == [*SSH, "--worker=all"]
    command = call[-1]
    logs = "$HOME/jm-logs"
    assert command.startswith(
        f"--command=set -e; mkdir -p {logs}; cd $HOME/jaxmodels; . $HOME/jm-venv/bin/activate; "
    )
    assert (
        "nohup setsid env PYTHONUNBUFFERED=1 'LIBTPU_INIT_ARGS=--a=1 --b' "
        "JAX_TRACEBACK_FILTERING=off jaxmodels train --config experiments/lm/rope_lm.py "
        "--workdir gs://b/run '--config.name=it'\\''s' "
        f"> {logs}/r1.log 2>&1 < /dev/null & echo $! > {logs}/r1.pid; "
    ) in command


def test_launch_needs_a_command_and_valid_env(sh):
    proc = sh("launch", env=BASE, check=False)
    assert proc.returncode == 2 and "no command given" in proc.stderr
    proc = sh("launch", "--env", "JM_UNSET_VAR", "--", "true", env=BASE, check=False)
    assert proc.returncode == 2 and "JM_UNSET_VAR is not set" in proc.stderr
    proc = sh("launch", "--env", "1X=2", "--", "true", env=BASE, check=False)
    assert proc.returncode == 2 and "NAME=VALUE" in proc.stderr
    assert sh.calls() == []


def _wait_for(predicate, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_launch_logs_stop_on_a_fake_worker(sh, tmp_path):
    """The remote command strings really start, log, refuse a 2nd run, and stop by SIGTERM."""
    home = tmp_path / "home"
    (home / "jaxmodels").mkdir(parents=True)
    (home / "jm-venv" / "bin").mkdir(parents=True)
    (home / "jm-venv" / "bin" / "activate").write_text("export JM_IN_VENV=yes\n")
    env = {**BASE, "FAKE_HOME": str(home)}
    program = textwrap.dedent("""\
        import os, signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: (print("saved, bye"), sys.exit(0)))
        print("cwd", os.path.basename(os.getcwd()), os.environ["JM_IN_VENV"],
              os.environ["GREETING"], sys.argv[1:], flush=True)
        time.sleep(60)
        """)
    weird = 'it\'s "$HOME" `x`'
    args = ["--run", "t1", "--env", "GREETING=hi there", "--", sys.executable, "-c", program]
    pid_file = home / "jm-logs" / "t1.pid"
    try:
        sh("launch", *args, weird, env=env)
        log = home / "jm-logs" / "latest.log"
        assert _wait_for(lambda: "cwd" in log.read_text())
        expected = f"cwd jaxmodels yes hi there {[weird]!r}"
        assert sh("logs", env=env).stdout.strip() == expected
        assert sh("logs", "--worker", "all", env=env).stdout.startswith("[")
        again = sh("launch", "--run", "t2", "--", "true", env=env, check=False)
        assert again.returncode != 0 and "run t1 is still active" in again.stderr
        assert "running" in sh("status", "--runs", env=env).stdout
        assert "sent SIGTERM" in sh("stop", env=env).stdout
        assert _wait_for(lambda: "saved, bye" in log.read_text())
        assert _wait_for(lambda: "stopped" in sh("status", "--runs", env=env).stdout)
        assert "no active run" in sh("stop", env=env).stdout
    finally:
        if pid_file.exists():
            subprocess.run(
                ["kill", "-KILL", "--", f"-{pid_file.read_text().strip()}"], capture_output=True
            )


FAKE_PYTHON = """\
#!/usr/bin/env bash
echo "python $*" >> "$FAKE_CALLS"
if [[ $1 == -m && $2 == venv ]]; then
  mkdir -p "$3/bin" && cp "$0" "$3/bin/python"
elif [[ $1 == -c ]]; then
  echo ok
fi
"""
FAKE_GIT = """\
#!/usr/bin/env bash
echo "git $*" >> "$FAKE_CALLS"
mkdir -p "${@: -1}"
"""


@pytest.mark.parametrize("source", ["git", "tarball"])
def test_remote_setup_on_a_fake_worker(tmp_path, source):
    home, stubs = tmp_path / "home", tmp_path / "stubs"
    home.mkdir()
    stubs.mkdir()
    for name, text in (("python", FAKE_PYTHON), ("git", FAKE_GIT)):
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    calls = tmp_path / "calls.txt"
    if source == "git":
        args = ["--git", "https://example.com/jm.git", "--branch", "tpu"]
        args += ["--pip", "gcsfs  google-cloud-storage"]
        jax = "jax[tpu] gcsfs google-cloud-storage"
    else:
        src = tmp_path / "src"
        src.mkdir()
        (src / "pyproject.toml").write_text("[project]\n")
        with tarfile.open(home / "src.tar.gz", "w:gz") as tar:
            tar.add(src / "pyproject.toml", arcname="pyproject.toml")
        args = ["--tarball", "src.tar.gz"]
        jax = "jax[tpu]"
    env = dict(os.environ, HOME=str(home), FAKE_CALLS=str(calls), JM_PYTHON=str(stubs / "python"))
    env["PATH"] = f"{stubs}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        ["bash", str(SCRIPTS / "remote_setup.sh"), *args], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    expected = [f"python -m venv {home}/jm-venv"]
    if source == "git":
        expected.append(
            f"git clone --depth 1 --branch tpu https://example.com/jm.git {home}/jaxmodels"
        )
    else:
        assert (home / "jaxmodels" / "pyproject.toml").exists()
    expected += [
        f"python -m pip install --upgrade {p}" for p in ("pip", jax, f"-e {home}/jaxmodels[tpu]")
    ]
    lines = calls.read_text().splitlines()
    assert lines[: len(expected)] == expected
    assert lines[-1].startswith("python -c import jax, jaxmodels")


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_clean():
    files = sorted(str(p) for p in SCRIPTS.glob("*.sh"))
    proc = subprocess.run(["shellcheck", "-x", *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_multislice_create_and_every_script_addresses_all_slices(sh):
    env = {**FULL, "JM_POLL_SECONDS": "0", "FAKE_QR_STATES": "ERROR,ERROR,ACTIVE"}
    proc = sh("create", "--num-slices", "2", "--spot", "--wait", env=env)
    create, *describes = sh.calls()
    assert create == (
        ["compute", "tpus", "queued-resources", "create", "lm-qr", *WHERE]
        + ["--node-count=2", "--node-prefix=lm", "--accelerator-type=v5litepod-16"]
        + ["--runtime-version=v2-alpha-tpuv5-lite", "--spot"]
    )
    assert len(describes) == 3 and "describe failed (1/5), retrying" in proc.stderr
    sh("launch", "--num-slices", "2", "--iap", "--internal-ip", "--", "true", env=BASE)
    ssh = sh.calls()
    assert sorted(c[4] for c in ssh) == ["lm-0", "lm-1"]
    assert all(c[-2:] == ["--tunnel-through-iap", "--internal-ip"] for c in ssh)
    sh("setup", "--num-slices", "2", "--ssh-flag=--strict-host-key-checking=no", env=BASE)
    calls = sh.calls()
    scps = [c for c in calls if c[3] == "scp"]
    assert sorted(c[-5] for c in scps) == ["lm-0:", "lm-1:"]
    assert all(c[-1] == "--strict-host-key-checking=no" for c in calls)
    sh("status", "--num-slices", "2", env=BASE)
    assert [c[3:5] for c in sh.calls()][1:] == [["describe", "lm-0"], ["describe", "lm-1"]]


def test_create_wait_gives_up_after_repeated_describe_failures(sh):
    env = {**FULL, "JM_POLL_SECONDS": "0", "JM_DESCRIBE_RETRIES": "2", "FAKE_QR_STATES": "ERROR"}
    proc = sh("create", "--queued", "--wait", env=env, check=False)
    assert proc.returncode == 2 and "failed 3 times in a row" in proc.stderr


def _fake_worker(tmp_path):
    home = tmp_path / "home"
    (home / "jaxmodels").mkdir(parents=True)
    (home / "jm-venv" / "bin").mkdir(parents=True)
    (home / "jm-venv" / "bin" / "activate").write_text("export JM_IN_VENV=yes\n")
    return home


def test_launch_clears_stale_tpu_holders_and_stops_all_when_one_fails(sh, tmp_path):
    home = _fake_worker(tmp_path)
    device, lockfile = tmp_path / "fakeaccel0", tmp_path / "libtpu_lockfile"
    device.write_text("")
    lockfile.write_text("")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"f = open({str(device)!r}); import time; time.sleep(60)"]
    )
    env = {**BASE, "FAKE_HOME": str(home), "JM_TPU_DEVICES": f"{tmp_path}/fakeaccel*"}
    env["JM_LIBTPU_LOCKFILE"] = str(lockfile)
    pid_file = home / "jm-logs" / "r1.pid"
    try:
        assert _wait_for(
            lambda: any(
                os.path.realpath(f"/proc/{holder.pid}/fd/{fd}") == str(device)
                for fd in os.listdir(f"/proc/{holder.pid}/fd")
            )
        )
        proc = sh("launch", "--run", "r1", "--", "sleep", "60", env=env)
        assert f"killed stale TPU holder pid {holder.pid}" in proc.stdout
        assert holder.wait(timeout=10) == -9 and not lockfile.exists()
        run_pid = int(pid_file.read_text())
        os.kill(run_pid, 0)  # the new run is alive
        subprocess.run(["kill", "-KILL", "--", f"-{run_pid}"])
        assert _wait_for(lambda: subprocess.run(["kill", "-0", str(run_pid)]).returncode != 0)
        # A worker that fails to start: the run is stopped on every worker.
        env["FAKE_SSH_FAIL_ONCE"] = str(tmp_path / "failed-once")
        proc = sh("launch", "--run", "r2", "--", "sleep", "60", env=env, check=False)
        assert proc.returncode == 1 and "stopping it on all of them" in proc.stderr
        assert "stopped r2" in proc.stdout, proc.stderr
        r2 = int((home / "jm-logs" / "r2.pid").read_text())
        assert _wait_for(lambda: subprocess.run(["kill", "-0", str(r2)]).returncode != 0)
    finally:
        holder.kill()
        for f in (home / "jm-logs").glob("*.pid") if (home / "jm-logs").exists() else []:
            subprocess.run(
                ["kill", "-KILL", "--", f"-{f.read_text().strip()}"], capture_output=True
            )


def test_remote_setup_refuses_to_replace_code_under_a_live_run(tmp_path):
    home = tmp_path / "home"
    logs = home / "jm-logs"
    logs.mkdir(parents=True)
    live = subprocess.Popen(["sleep", "60"])
    try:
        (logs / "r1.pid").write_text(str(live.pid))
        (logs / "latest.pid").symlink_to("r1.pid")
        (home / "jaxmodels").mkdir()
        (home / "jaxmodels" / "keep.py").write_text("code of the live run")
        env = dict(os.environ, HOME=str(home))
        args = ["--git", "https://example.com/jm.git", "--logs", "jm-logs"]
        proc = subprocess.run(
            ["bash", str(SCRIPTS / "remote_setup.sh"), *args],
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2 and f"run r1 (pid {live.pid}) is still running" in proc.stderr
        assert (home / "jaxmodels" / "keep.py").exists()
    finally:
        live.kill()
