#!/usr/bin/env bash
# Fills the GPU suite's wheelhouse here, for a machine that reaches no package index.
#
#   bash experiments/benchmarks/gpu_wheels.sh [DIR] [PYTHON_VERSION]   # default .whl 3.12
#
# Downloads the wheels of gpu_suite.requirements.txt (about 3 MB) built for CPython
# PYTHON_VERSION on x86-64 Linux into DIR (default .whl at the checkout's root, which git
# ignores). gpu_install.py installs from DIR first; carry it to the lent GPU machine (its
# image has Python 3.12), see docs/benchmarks.md. Wheels already in DIR are kept.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR="${1:-$ROOT/.whl}"
VERSION="${2:-3.12}"
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64
  manylinux2014_x86_64 manylinux1_x86_64)
mkdir -p "$DIR"
"${PYTHON:-python3}" -m pip download -q --disable-pip-version-check --no-deps \
  --only-binary=:all: --python-version "$VERSION" --implementation cp \
  "${PLATFORMS[@]/#/--platform=}" --retries 3 --timeout 20 -d "$DIR" \
  -r "$ROOT/experiments/benchmarks/gpu_suite.requirements.txt"
echo "wheels for CPython $VERSION in $DIR: $(du -sh "$DIR" | cut -f1)"
