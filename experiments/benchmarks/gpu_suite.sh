#!/usr/bin/env bash
# The GPU suite for a fresh card (one H100/H200 whose image has jax[cuda]; no grain, tfds, torch).
#
#   bash experiments/benchmarks/gpu_suite.sh [--out FILE] [--only a,b] [--budget SECONDS]
#   bash experiments/benchmarks/gpu_suite.sh --dry-run     # toy sizes on the CPU, same code paths
#
# 1. Installs this package without moving any preinstalled jax / jaxlib / CUDA / NVIDIA wheel:
#    their installed versions go into a constraints file, `pip install -c` resolves only what is
#    missing, and where that cannot (no network) `--no-deps` installs the package alone. The
#    suite then checks that none of those wheels changed version.
# 2. Runs each measurement in its own process under its own timeout, appending one JSON line
#    each to FILE (default suite.jsonl): its numbers, the issue's target, the attention kernel
#    that ran; a measurement that times out or crashes still gets a line (status/rc/log tail).
# The timeouts add up to under 8 minutes with the install (see BUDGET below).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-python3}"
OUT="suite.jsonl"
ONLY=""
DRY=""
BUDGET=470  # seconds for the whole suite, install included (the issue allows 8 minutes)
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --budget) BUDGET="$2"; shift 2 ;;
    --dry-run) DRY="--dry-run"; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
# name and its own timeout in seconds (cuDNN autotuning and XLA compiles dominate)
MEASUREMENTS=(
  "lm_436m 120"
  "siglip_b16_tower 70"
  "siglip_b16_step 100"
  "trn_train_step 60"
  "trn_streaming 40"
  "blip_step 45"
  "glow_step 30"
)
START=$SECONDS
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
: >"$OUT"

# ---------------------------------------------------------------- install
pinned() {  # name==version of every installed jax / CUDA / NVIDIA wheel (and the ABIs they pin)
  "$PY" -m pip list --format=freeze 2>/dev/null |
    grep -iE '^(jax|jaxlib|jax[-_]cuda[0-9a-z_-]*|nvidia[-_][a-z0-9_-]+|ml[-_]dtypes|numpy)==' |
    sort -f
}
pinned >"$WORK/constraints.txt"
if [ -n "$DRY" ]; then
  how="dry run: not installed (would run pip install -c constraints.txt -e $ROOT)"
  export JAX_PLATFORMS=cpu
elif "$PY" -m pip install -q --retries 0 --timeout 5 --no-build-isolation \
  -c "$WORK/constraints.txt" -e "$ROOT" >"$WORK/pip.log" 2>&1; then  # fails fast offline
  how="pip install -c constraints.txt -e ."
elif "$PY" -m pip install -q --no-build-isolation --no-deps -e "$ROOT" >>"$WORK/pip.log" 2>&1; then
  how="pip install --no-deps -e . (dependencies could not be resolved here; see pip log)"
else
  how="not installed: using PYTHONPATH (pip failed; see pip log)"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
pinned >"$WORK/after.txt"
"$PY" - "$WORK" "$how" "$OUT" <<'EOF'
import json, sys
work, how, out = sys.argv[1:]
before, after = (open(f"{work}/{f}").read().split() for f in ("constraints.txt", "after.txt"))
moved = sorted(set(before) ^ set(after))
missing = []
for m in ("jax", "flax", "optax", "ml_collections", "jaxmodels"):
    try:
        __import__(m)
    except Exception as e:  # noqa: BLE001
        missing.append(f"{m}: {e}")
log = open(f"{work}/pip.log").read()[-800:] if "see pip log" in how else ""
line = {"name": "install", "status": "ok" if not (moved or missing) else "error", "how": how,
        "pinned": len(before), "moved": moved, "missing": missing, "pip_log_tail": log}
print(json.dumps(line))
open(out, "a").write(json.dumps(line) + "\n")
EOF

# ---------------------------------------------------------------- measurements
for entry in "${MEASUREMENTS[@]}"; do
  read -r name limit <<<"$entry"
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then continue; fi
  # the dry run compiles on a (possibly busy) CPU: its own generous limit, no shared budget
  if [ -n "$DRY" ]; then limit=300; else
    left=$((BUDGET - (SECONDS - START)))
    [ "$left" -lt "$limit" ] && limit=$left
  fi
  if [ "$limit" -le 5 ]; then
    "$PY" "$ROOT/experiments/benchmarks/gpu_suite.py" "$name" --failed skipped_no_time \
      --out "$OUT" >/dev/null
    continue
  fi
  log="$WORK/$name.log"
  timeout --kill-after=5 "$limit" "$PY" "$ROOT/experiments/benchmarks/gpu_suite.py" "$name" \
    $DRY --out "$OUT" >"$log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    status=error
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && status=timeout
    "$PY" "$ROOT/experiments/benchmarks/gpu_suite.py" "$name" --failed "$status" --rc "$rc" \
      --log "$log" --timeout "$limit" --out "$OUT" >/dev/null
  fi
  tail -n 1 "$OUT"
done
echo "suite done in $((SECONDS - START)) s; lines in $OUT" >&2
