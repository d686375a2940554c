#!/usr/bin/env bash
# Shows (or follows, or saves) the log of a launch.sh run from one worker or all of them.
set -euo pipefail
JM_WORKER=${JM_WORKER:-0}
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

JM_RUN=${JM_RUN:-latest}
lines=100
follow=0
save=""

usage() {
  cat <<USAGE
Usage: $JM_SCRIPT [options]

Prints the last lines of \$HOME/$JM_LOG_DIR/RUN.log from worker JM_WORKER (default 0 here;
--worker all prefixes each line with the worker's hostname).

Options:
  --run NAME       JM_RUN  run (default: latest)
  -n, --lines N    lines to show (100)
  -f, --follow     keep following (Ctrl-C to stop; the run goes on)
  --save DIR       copy the whole log of each worker to DIR/WORKER_ID.log instead
$JM_COMMON_HELP
USAGE
}

jm_extra_option() {
  case $1 in
    --run) jm_need_value "$@"; JM_RUN=$2; JM_SHIFT=2 ;;
    -n | --lines) jm_need_value "$@"; lines=$2; JM_SHIFT=2 ;;
    -f | --follow) follow=1 ;;
    --save) jm_need_value "$@"; save=$2; JM_SHIFT=2 ;;
    *) return 1 ;;
  esac
}

jm_parse "$@"
jm_require project zone name
[[ $JM_RUN =~ ^[A-Za-z0-9_.-]+$ ]] || jm_die "bad run name '$JM_RUN' (JM_RUN/--run)"
[[ $lines =~ ^[0-9]+$ ]] || jm_die "bad --lines '$lines'"
[[ -n $save && $follow == 1 ]] && jm_die "choose one of --save and --follow"

log=$(jm_rpath "$JM_LOG_DIR")/$JM_RUN.log
# shellcheck disable=SC2016  # $(hostname) expands on the worker
check="[ -e $log ] || { echo \"\$(hostname): no log $log\" >&2; exit 1; }; "
if [[ -n $save ]]; then
  [[ $JM_DRY_RUN == 1 ]] || mkdir -p "$save"
  jm_ssh "${check}cat $log" --output-directory="$save"
  exit 0
fi
tail=(tail -n "$lines")
((follow)) && tail+=(-F)
command="$check${tail[*]} $log"
# shellcheck disable=SC2016  # $(hostname) expands on the worker
[[ $JM_WORKER =~ ^[0-9]+$ ]] || command+=" | sed -u \"s/^/[\$(hostname)] /\""
jm_ssh "$command"
