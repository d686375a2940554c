#!/usr/bin/env bash
# CI's test of the GPU suite's install step, for real (run by .ci/run on every run):
#
#   bash experiments/benchmarks/gpu_install_check.sh
#
# In a fresh venv without setuptools or wheel that holds only jax and jaxlib (CI's versions,
# like the GPU image that has only jax[cuda]):
# 1. gpu_install.py from the package index installs every pin, imports what the suite imports
#    and builds each family line's task at toy size;
# 2. with the pins removed again and the index unreachable, it installs them from a wheelhouse
#    that gpu_wheels.sh filled (the lent GPU machine's way);
# 3. the suite's dry run of its cheapest line runs there;
# 4. with one import broken, it stops with exit 1 and one line naming the import.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$ROOT/experiments/benchmarks"
HOST="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
V="$WORK/venv"
PY="$V/bin/python"
step() { echo "gpu_install_check: $* ($SECONDS s)"; }
fail() { echo "gpu_install_check: FAILED: $*" >&2; exit 1; }

step "fresh venv without setuptools, with CI's jax only"
"$HOST" -m venv "$V"
"$PY" -m pip uninstall -q -y setuptools wheel 2>/dev/null || true
"$PY" -c 'import setuptools' 2>/dev/null && fail "setuptools is still in the venv"
version() { "$HOST" -c "import importlib.metadata as m; print(m.version('$1'))"; }
"$PY" -m pip install -q --disable-pip-version-check --only-binary=:all: --no-compile \
  "jax==$(version jax)" "jaxlib==$(version jaxlib)"

step "install from the package index"
"$PY" "$BENCH/gpu_install.py" --wheels "$WORK/none" --out "$WORK/index.jsonl"
grep -q '"how": "package index"' "$WORK/index.jsonl" || fail "not from the index"

step "install from the wheelhouse, the index unreachable"
"$PY" -m pip uninstall -q -y -r "$BENCH/gpu_suite.requirements.txt"
PYTHON="$HOST" bash "$BENCH/gpu_wheels.sh" "$WORK/wheels" \
  "$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
PIP_CONFIG_FILE=/dev/null PIP_INDEX_URL=http://127.0.0.1:9/simple \
  "$PY" "$BENCH/gpu_install.py" --wheels "$WORK/wheels" --out "$WORK/wheels.jsonl"
grep -q '"how": "wheelhouse' "$WORK/wheels.jsonl" || fail "not from the wheelhouse"

step "the dry run of a line in the venv"
PYTHON="$PY" bash "$BENCH/gpu_suite.sh" --dry-run --only trn_streaming --out "$WORK/suite.jsonl"
"$PY" - "$WORK/suite.jsonl" <<'EOF'
import json, sys
lines = [json.loads(x) for x in open(sys.argv[1])]
assert [x["name"] for x in lines] == ["install", "trn_streaming"], lines
assert all(x["status"] == "ok" for x in lines), lines
EOF

step "one import broken: one line, exit 1"
"$PY" -m pip uninstall -q -y msgpack
if "$PY" "$BENCH/gpu_install.py" --check-only >/dev/null 2>"$WORK/err"; then
  fail "gpu_install.py passed without msgpack"
fi
grep -q "^gpu_install: the suite cannot run: import .* No module named 'msgpack'" "$WORK/err" ||
  fail "no clear line: $(cat "$WORK/err")"
step "passed"
