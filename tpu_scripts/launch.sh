#!/usr/bin/env bash
# Starts the same command, detached, on every TPU worker; each worker logs to its own file.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

JM_RUN=${JM_RUN:-run-$(date -u +%Y%m%d-%H%M%S)}
JM_TPU_DEVICES=${JM_TPU_DEVICES:-/dev/accel*|/dev/vfio/[0-9]*}
JM_LIBTPU_LOCKFILE=${JM_LIBTPU_LOCKFILE:-/tmp/libtpu_lockfile}
env_words=(PYTHONUNBUFFERED=1)

usage() {
  cat <<USAGE
Usage: $JM_SCRIPT [options] -- COMMAND [ARGS...]

Runs COMMAND on every worker (JM_WORKER, default all) at once, from \$HOME/$JM_REMOTE_DIR
with the \$HOME/$JM_VENV virtualenv active, detached (nohup setsid) so it outlives the ssh
session. Output goes to \$HOME/$JM_LOG_DIR/RUN.log on each worker (latest.log links to the
newest; the pid is in RUN.pid). Refuses to start while the previous run still lives (stop.sh).
Before starting, each worker kills stale processes that still hold the TPU (JM_TPU_DEVICES,
default /dev/accel*|/dev/vfio/[0-9]*: a crashed run's leftovers) and removes the libtpu lock
file (JM_LIBTPU_LOCKFILE=/tmp/libtpu_lockfile). If the run fails to start on any worker, it is
stopped on every worker (a pod cannot run with a missing host).
COMMAND's words are quoted for the remote shell exactly as given here.
On a multi-host slice every worker must run the same command: jax.distributed connects them.
With --num-slices N the command starts on every worker of every slice; the TPU runtime of a
multislice queued resource sets the MEGASCALE_* variables that connect the slices.

Options:
  --run NAME          JM_RUN   run name for the log file (default: run-UTCDATE-TIME)
  --env NAME=VALUE    set an environment variable for COMMAND (repeatable), e.g.
                      --env LIBTPU_INIT_ARGS=... --env JAX_COMPILATION_CACHE_DIR=gs://b/cache
  --env NAME          pass this variable's local value through
$JM_COMMON_HELP

Example:
  $JM_SCRIPT --run lm1 -- jaxmodels train --config experiments/lm/rope_lm.py \\
    --workdir gs://BUCKET/lm1
USAGE
}

jm_extra_option() {
  case $1 in
    --run) jm_need_value "$@"; JM_RUN=$2; JM_SHIFT=2 ;;
    --env)
      jm_need_value "$@"
      JM_SHIFT=2
      if [[ $2 == *=* ]]; then
        env_words+=("$2")
      else
        [[ -n ${!2+set} ]] || jm_die "--env $2: $2 is not set here (use --env $2=VALUE)"
        env_words+=("$2=${!2}")
      fi
      [[ ${env_words[${#env_words[@]} - 1]} =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] \
        || jm_die "--env '$2': want NAME=VALUE with a shell variable NAME"
      ;;
    *) return 1 ;;
  esac
}

jm_parse "$@"
jm_require project zone name
((${#JM_ARGS[@]})) || jm_die "no command given: put it after '--' (see --help)"
[[ $JM_RUN =~ ^[A-Za-z0-9_.-]+$ ]] || jm_die "bad run name '$JM_RUN' (JM_RUN/--run)"

logs=$(jm_rpath "$JM_LOG_DIR")
pid=$logs/latest.pid
log=$logs/$JM_RUN.log
# shellcheck disable=SC2016  # $(...), $! and $f expand on the worker
clear_stale="for f in /proc/[0-9]*/fd/*; do case \$(readlink \"\$f\" 2>/dev/null) in \
$JM_TPU_DEVICES) p=\${f#/proc/}; p=\${p%%/*}; case \" \$seen \" in *\" \$p \"*) ;; *) seen=\"\$seen \$p\"; \
{ kill -9 \$p 2>/dev/null || sudo -n kill -9 \$p 2>/dev/null; } \
&& echo \"\$(hostname): killed stale TPU holder pid \$p\"; esac ;; esac; done; \
if [ -e $JM_LIBTPU_LOCKFILE ]; then rm -f $JM_LIBTPU_LOCKFILE 2>/dev/null || sudo -n rm -f $JM_LIBTPU_LOCKFILE; \
echo \"\$(hostname): removed $JM_LIBTPU_LOCKFILE\"; fi; "
# shellcheck disable=SC2016  # $(...) and $! expand on the worker
remote="set -e; mkdir -p $logs; cd $(jm_rpath "$JM_REMOTE_DIR"); . $(jm_rpath "$JM_VENV")/bin/activate; \
if [ -e $pid ] && kill -0 \"\$(cat $pid)\" 2>/dev/null; then \
echo \"\$(hostname): run \$(basename \"\$(readlink $pid)\" .pid) is still active; stop it with stop.sh\" >&2; \
exit 1; fi; set +e; seen=; $clear_stale set -e; \
nohup setsid env $(jm_quote_words "${env_words[@]}") $(jm_quote_words "${JM_ARGS[@]}") \
> $log 2>&1 < /dev/null & \
echo \$! > $logs/$JM_RUN.pid; ln -sfn $JM_RUN.log $logs/latest.log; ln -sfn $JM_RUN.pid $pid; \
echo \"\$(hostname): started $JM_RUN (pid \$!), log $log\""
if ! jm_ssh "$remote"; then
  echo "$JM_SCRIPT: $JM_RUN did not start on every worker; stopping it on all of them" >&2
  # shellcheck disable=SC2016  # $(...) expands on the worker
  jm_ssh "if [ -e $logs/$JM_RUN.pid ] && kill -0 \"\$(cat $logs/$JM_RUN.pid)\" 2>/dev/null; then \
kill -KILL -- \"-\$(cat $logs/$JM_RUN.pid)\"; echo \"\$(hostname): stopped $JM_RUN\"; fi" || true
  exit 1
fi
