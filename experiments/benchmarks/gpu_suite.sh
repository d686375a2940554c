#!/usr/bin/env bash
# The GPU suite for a lent card: one H100/H200 whose image has jax[cuda] and maybe no network.
#
#   bash experiments/benchmarks/gpu_suite.sh [--out FILE] [--only a,b] [--budget S] [--limit S]
#                                             [--wheels DIR]
#   bash experiments/benchmarks/gpu_suite.sh --dry-run     # toy sizes on the CPU, same code paths
#
# 1. gpu_install.py installs what the suite imports (gpu_suite.requirements.txt: flax, optax,
#    ml_collections and their imports, CI's versions, wheels only, jax untouched), from the
#    wheelhouse DIR (default .whl, filled by gpu_wheels.sh) or else the package index, and
#    imports everything the suite imports. If that fails it prints one line and the suite
#    stops (exit 1). The dry run installs nothing: it checks the imports only.
# 2. Runs the lines of `gpu_suite.py --list` in that order (what matters most first), each in
#    its own process under its own limit, lowered to what is left of the budget (default
#    540 s, install included: the whole suite ends inside a 10-minute device call). Each
#    appends one JSON line to FILE (default suite.jsonl); a line that times out, crashes or
#    finds no time left still gets one (status, exit code, log tail).
# 3. Prints the lines as a table: step time beside the throughput derived from it.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$ROOT/experiments/benchmarks"
PY="${PYTHON:-python3}"
OUT="suite.jsonl"
ONLY=""
DRY=""
BUDGET=540
LIMIT=""  # seconds for every line instead of its own (the dry run's default: DRY_LIMIT)
DRY_LIMIT=1200  # seconds per line of the dry run: a toy compile on a shared 2-core CPU
WHEELS="$ROOT/.whl"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --budget) BUDGET="$2"; shift 2 ;;
    --limit) LIMIT="$2"; shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --dry-run) DRY="--dry-run"; shift ;;
    *) echo "gpu_suite.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
START=$SECONDS
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
: >"$OUT" || exit 2
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # jaxmodels from the checkout, not pip
export PYTHONUNBUFFERED=1
[ -n "$DRY" ] && export JAX_PLATFORMS=cpu

# ---------------------------------------------------------------- install
"$PY" "$BENCH/gpu_install.py" --out "$OUT" --wheels "$WHEELS" ${DRY:+--check-only} || exit 1

# ---------------------------------------------------------------- measurements
LINES="$("$PY" "$BENCH/gpu_suite.py" --list)" || exit 1
while read -r name limit; do
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then continue; fi
  limit="${LIMIT:-$limit}"
  if [ -n "$DRY" ]; then limit="${LIMIT:-$DRY_LIMIT}"; else
    left=$((BUDGET - (SECONDS - START)))
    [ "$left" -lt "$limit" ] && limit=$left
  fi
  if [ "$limit" -le 10 ]; then
    "$PY" "$BENCH/gpu_suite.py" "$name" --failed skipped_no_time --out "$OUT" </dev/null >/dev/null
    continue
  fi
  log="$WORK/$name.log"
  timeout --kill-after=5 "$limit" "$PY" "$BENCH/gpu_suite.py" "$name" $DRY --out "$OUT" \
    </dev/null >"$log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    status=error
    { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && status=timeout
    "$PY" "$BENCH/gpu_suite.py" "$name" --failed "$status" --rc "$rc" --log "$log" \
      --timeout "$limit" --out "$OUT" </dev/null >/dev/null
  fi
  tail -n 1 "$OUT"
done <<<"$LINES"
"$PY" "$BENCH/gpu_suite.py" --summary "$OUT"
echo "suite done in $((SECONDS - START)) s; lines in $OUT" >&2
