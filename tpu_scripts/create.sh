#!/usr/bin/env bash
# Creates a Cloud TPU VM (tpu-vm create) or queues one (queued-resources create).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

JM_SPOT=${JM_SPOT:-0}
JM_PREEMPTIBLE=0
JM_WAIT=0
JM_POLL_SECONDS=${JM_POLL_SECONDS:-30}
JM_DESCRIBE_RETRIES=${JM_DESCRIBE_RETRIES:-5}

usage() {
  cat <<USAGE
Usage: $JM_SCRIPT [options] [-- extra gcloud flags]

Creates the TPU VM JM_TPU_NAME with 'gcloud compute tpus tpu-vm create', or with
--queued requests it through 'gcloud compute tpus queued-resources create' (the node id is
JM_TPU_NAME, the queued resource JM_QR_NAME). With --num-slices N it queues N slices as one
multislice request (nodes NAME-0 .. NAME-(N-1), which the other scripts address together).
Needs project, zone, name, accelerator and runtime. Flags after '--' go to gcloud unchanged (e.g. -- --reserved, --network=NET,
--valid-until-duration=6h for a queued request).

Options:
  --spot               JM_SPOT=1  spot capacity (may be preempted at any time; cheaper)
  --preemptible                   legacy preemptible TPU (tpu-vm create only)
  --wait                          with --queued, poll until the request is ACTIVE
                                  (every JM_POLL_SECONDS=30 s; fails on FAILED/SUSPENDED, or
                                  after JM_DESCRIBE_RETRIES=5 failed describes in a row)
$JM_COMMON_HELP

Examples:
  JM_PROJECT=my-proj JM_ZONE=us-west4-a JM_TPU_NAME=lm JM_ACCELERATOR=v5litepod-16 \\
    JM_RUNTIME=v2-alpha-tpuv5-lite $JM_SCRIPT --queued --spot --wait
  $JM_SCRIPT --num-slices 2 --spot --wait   # two v5litepod-16 slices: nodes lm-0, lm-1
USAGE
}

jm_extra_option() {
  case $1 in
    --spot) JM_SPOT=1 ;;
    --preemptible) JM_PREEMPTIBLE=1 ;;
    --wait) JM_WAIT=1 ;;
    *) return 1 ;;
  esac
}

jm_parse "$@"
jm_require project zone name accelerator runtime
((JM_SPOT && JM_PREEMPTIBLE)) && jm_die "choose one of --spot and --preemptible"
((JM_WAIT && !JM_QUEUED)) && jm_die "--wait applies to --queued requests only"
((JM_PREEMPTIBLE && JM_QUEUED)) && jm_die "queued resources take --spot, not --preemptible"

where=(--project="$JM_PROJECT" --zone="$JM_ZONE")
capacity=()
((JM_SPOT)) && capacity=(--spot)
((JM_PREEMPTIBLE)) && capacity=(--preemptible)

if ((!JM_QUEUED)); then
  jm_gcloud compute tpus tpu-vm create "$JM_TPU_NAME" "${where[@]}" \
    --accelerator-type="$JM_ACCELERATOR" --version="$JM_RUNTIME" \
    ${capacity[@]+"${capacity[@]}"} ${JM_ARGS[@]+"${JM_ARGS[@]}"}
  exit 0
fi

nodes=(--node-id="$JM_TPU_NAME")
((JM_NUM_SLICES == 1)) || nodes=(--node-count="$JM_NUM_SLICES" --node-prefix="$JM_TPU_NAME")
jm_gcloud compute tpus queued-resources create "$JM_QR_NAME" "${where[@]}" \
  "${nodes[@]}" --accelerator-type="$JM_ACCELERATOR" \
  --runtime-version="$JM_RUNTIME" ${capacity[@]+"${capacity[@]}"} \
  ${JM_ARGS[@]+"${JM_ARGS[@]}"}
((JM_WAIT)) || exit 0
[[ $JM_DRY_RUN == 1 ]] && exit 0
failures=0
while true; do
  if ! state=$(jm_gcloud compute tpus queued-resources describe "$JM_QR_NAME" \
    "${where[@]}" --format='value(state.state)'); then
    ((++failures <= JM_DESCRIBE_RETRIES)) \
      || jm_die "describe of $JM_QR_NAME failed $failures times in a row; giving up waiting"
    echo "$JM_QR_NAME: describe failed ($failures/$JM_DESCRIBE_RETRIES), retrying" >&2
    sleep "$JM_POLL_SECONDS"
    continue
  fi
  failures=0
  echo "$JM_QR_NAME: ${state:-unknown}" >&2
  case $state in
    ACTIVE) exit 0 ;;
    FAILED | SUSPENDED | SUSPENDING) jm_die "queued resource $JM_QR_NAME is $state" ;;
  esac
  sleep "$JM_POLL_SECONDS"
done
