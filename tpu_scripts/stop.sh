#!/usr/bin/env bash
# Signals the run started by launch.sh on every worker (SIGTERM: the trainer checkpoints, exits).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

JM_RUN=${JM_RUN:-latest}
signal=TERM

usage() {
  cat <<USAGE
Usage: $JM_SCRIPT [options]

Sends a signal to the process group of a run started by launch.sh, on every worker
(JM_WORKER, default all). SIGTERM (default) lets the trainer save a checkpoint and exit,
like a preemption; --signal KILL ends it at once.

Options:
  --run NAME      JM_RUN  run to stop (default: latest)
  --signal SIG    signal name (TERM, INT, KILL)
$JM_COMMON_HELP
USAGE
}

jm_extra_option() {
  case $1 in
    --run) jm_need_value "$@"; JM_RUN=$2; JM_SHIFT=2 ;;
    --signal) jm_need_value "$@"; signal=$2; JM_SHIFT=2 ;;
    *) return 1 ;;
  esac
}

jm_parse "$@"
jm_require project zone name
[[ $JM_RUN =~ ^[A-Za-z0-9_.-]+$ ]] || jm_die "bad run name '$JM_RUN' (JM_RUN/--run)"
[[ $signal =~ ^(TERM|INT|KILL|HUP|USR1|USR2)$ ]] || jm_die "bad --signal '$signal'"

pid=$(jm_rpath "$JM_LOG_DIR")/$JM_RUN.pid
# shellcheck disable=SC2016  # $(...) expands on the worker
jm_ssh "if [ -e $pid ] && kill -0 \"\$(cat $pid)\" 2>/dev/null; then \
kill -$signal -- \"-\$(cat $pid)\"; echo \"\$(hostname): sent SIG$signal to run pid \$(cat $pid)\"; \
else echo \"\$(hostname): no active run ($JM_RUN)\"; fi"
