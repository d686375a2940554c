#!/usr/bin/env bash
# Shows the TPU VM (and queued resource) state, and optionally each worker's run.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

runs=0

usage() {
  cat <<USAGE
Usage: $JM_SCRIPT [options]

Describes the queued resource (with --queued) and the TPU VM node: state (READY, PREEMPTED,
...), health, accelerator type, runtime, worker endpoints.

Options:
  --runs     also ask every worker whether its latest launch.sh run is alive, with its last
             log line
$JM_COMMON_HELP
USAGE
}

jm_extra_option() {
  case $1 in
    --runs) runs=1 ;;
    *) return 1 ;;
  esac
}

jm_parse "$@"
jm_require project zone name

where=(--project="$JM_PROJECT" --zone="$JM_ZONE")
if ((JM_QUEUED)); then
  jm_gcloud compute tpus queued-resources describe "$JM_QR_NAME" "${where[@]}"
  while read -r node; do
    if ! jm_gcloud compute tpus tpu-vm describe "$node" "${where[@]}"; then
      echo "$JM_SCRIPT: node $node is not there yet (queued request not ACTIVE?)" >&2
      exit 1
    fi
  done < <(jm_nodes)
else
  jm_gcloud compute tpus tpu-vm describe "$JM_TPU_NAME" "${where[@]}"
fi
((runs)) || exit 0
logs=$(jm_rpath "$JM_LOG_DIR")
# shellcheck disable=SC2016  # $(...) expands on the worker
jm_ssh "if [ -e $logs/latest.pid ] && kill -0 \"\$(cat $logs/latest.pid)\" 2>/dev/null; \
then state=running; else state=stopped; fi; \
echo \"\$(hostname): \$(readlink $logs/latest.log || echo no-run) \$state\"; \
tail -n 1 $logs/latest.log 2>/dev/null || true"
