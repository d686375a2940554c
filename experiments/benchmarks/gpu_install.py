"""The GPU suite's install step: what the suite imports, at CI's versions, jax left untouched.

    python3 experiments/benchmarks/gpu_install.py [--out suite.jsonl] [--wheels .whl]

1. Writes the installed jax / jaxlib / jax-cuda / NVIDIA / numpy / ml_dtypes / scipy
   versions into a constraints file (read with importlib.metadata: no pip, no network).
2. Installs ``gpu_suite.requirements.txt`` (flax, optax, ml_collections and what they import),
   wheels only, ``--no-deps``, against those constraints, skipping pip where every pin is
   already installed. From the wheelhouse first (``--wheels``, default ``.whl`` in the
   checkout, filled by ``gpu_wheels.sh``: the lent GPU machine reaches no registry), then
   from the package index with retries and a timeout. Nothing is built: no setuptools needed.
   jaxmodels itself is not installed: the suite puts the checkout on ``PYTHONPATH``.
3. Checks that no constrained wheel moved, imports everything the suite imports and builds
   each family line's task at toy size (``gpu_suite.py --check-imports``). Writes one JSON
   line (``"name": "install"``); where an import still fails it also prints one line saying
   what, and exits 1.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REQUIREMENTS = os.path.join(HERE, "gpu_suite.requirements.txt")
# Distributions pip must never move: the accelerator stack and the ABIs it was built against.
KEEP = re.compile(
    r"^(jax|jaxlib|jax-cuda\d+-(plugin|pjrt)|nvidia-.+|numpy|ml-dtypes|scipy|opt-einsum)$"
)
PIP = ["--disable-pip-version-check", "-q", "--no-deps", "--only-binary=:all:", "--no-compile"]
PIP_TIMEOUT_S = 90  # one pip call, all its retries included (3 MB of wheels)


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    """Normalised distribution name -> version of everything importable by this Python."""
    out = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(norm(name), dist.version)
    return out


def pins(path: str = REQUIREMENTS) -> dict[str, str]:
    """Normalised name -> version of each ``name==version`` line of the requirements file."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, sep, version = line.partition("==")
                if not sep:
                    raise ValueError(f"{path}: {line!r} is not pinned as name==version")
                out[norm(name)] = version.strip()
    return out


def constraints(have: dict[str, str]) -> list[str]:
    return sorted(f"{n}=={v}" for n, v in have.items() if KEEP.match(n))


def pip_install(args: list[str], log: str) -> bool:
    """Runs ``python -m pip install ARGS`` (output appended to ``log``); True if it worked."""
    cmd = [sys.executable, "-m", "pip", "install", *PIP, *args]
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        try:
            return subprocess.run(cmd, stdout=f, stderr=f, timeout=PIP_TIMEOUT_S).returncode == 0
        except subprocess.TimeoutExpired:
            f.write(f"pip stopped after {PIP_TIMEOUT_S} s\n")
            return False


def install(wheels: str, work: str, check_only: bool = False) -> dict:
    """Installs the pins not yet installed (none with ``check_only``); returns the install
    line, without the import check."""
    t0 = time.perf_counter()
    before, want = installed(), pins()
    if "jax" not in before:
        return {"status": "error", "how": f"no jax in {sys.executable}: run on an image with "
                "jax[cuda] installed (the suite never installs jax)"}  # fmt: skip
    missing = sorted(f"{n}=={v}" for n, v in want.items() if before.get(n) != v)
    keep = constraints(before)
    tries = {}  # where pip was asked -> whether it worked, in order
    log = os.path.join(work, "pip.log")
    if missing and not check_only:
        cfile, rfile = os.path.join(work, "constraints.txt"), os.path.join(work, "req.txt")
        for path, lines in ((cfile, keep), (rfile, missing)):
            with open(path, "w") as f:
                f.write("\n".join(lines) + "\n")
        base = ["-c", cfile, "-r", rfile]
        if os.path.isdir(wheels):
            tries[f"wheelhouse {wheels}"] = pip_install(["--no-index", "-f", wheels, *base], log)
        if not any(tries.values()):
            online = ["--retries", "3", "--timeout", "20"]
            tries["package index"] = pip_install([*online, *base], log)
    worked = [where for where, ok in tries.items() if ok]
    how = worked[0] if worked else "check only" if check_only else "nothing to install"
    if tries and not worked:
        how = "not installed (pip failed; see pip_log_tail): the image's versions are used"
    after = installed()
    line = {
        "status": "ok", "how": how, "installed": missing if worked else [], "kept": len(keep),
        "moved": sorted(set(keep) - set(constraints(after))),
        "off_pin": {n: after.get(n) for n, v in want.items() if after.get(n) != v},
        "python": sys.version.split()[0], "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    if not all(tries.values()):  # a try failed: the end of pip's words
        with open(log, errors="replace") as f:
            line["pip_log_tail"] = f.read()[-1200:]
    if line["moved"]:
        line["status"] = "error"
    return line


def check_imports() -> dict:
    """``gpu_suite.py --check-imports`` in a fresh process (it sees what was just installed)."""
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "gpu_suite.py"), "--check-imports"],
        capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"status": "error", "failed": {"gpu_suite.py": proc.stderr.strip()[-600:]}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="", help="append the install line to this file")
    p.add_argument("--wheels", default=os.path.join(ROOT, ".whl"), help="the wheelhouse")
    p.add_argument("--check-only", action="store_true", help="install nothing (dry run)")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        line = {"name": "install", **install(a.wheels, work, a.check_only)}
    if line["status"] == "ok":
        imports = check_imports()
        line["imports"] = imports
        if imports.get("status") != "ok":
            line["status"] = "error"
    text = json.dumps(line)
    print(text, flush=True)
    if a.out:
        with open(a.out, "a") as f:
            f.write(text + "\n")
    if line["status"] != "ok":
        print(f"gpu_install: the suite cannot run: {reason(line)}", file=sys.stderr, flush=True)
        return 1
    return 0


def reason(line: dict) -> str:
    """The one line that says why the install line is an error."""
    if line.get("moved"):
        return f"pip moved pinned accelerator wheels {line['moved']}"
    imports = line.get("imports") or {}
    failed = imports.get("failed") or {}
    if failed:
        module, error = next(iter(failed.items()))
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return f"import {module} fails: {error}{more}; install: {line['how']}"
    if imports.get("imported_unneeded"):
        return f"the suite imported {imports['imported_unneeded']}, which it must not need"
    return line["how"]


if __name__ == "__main__":
    sys.exit(main())
