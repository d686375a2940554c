#!/usr/bin/env bash
# Deletes the TPU VM, or the queued resource together with its node.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

yes=0

usage() {
  cat <<USAGE
Usage: $JM_SCRIPT [options] [-- extra gcloud flags]

Deletes the TPU VM JM_TPU_NAME ('tpu-vm delete'), or with --queued the queued resource
JM_QR_NAME and its node ('queued-resources delete --force'). gcloud asks for confirmation
unless --yes. Anything on the workers' disks is lost: keep checkpoints on GCS.

Options:
  --yes     do not ask (passes --quiet to gcloud)
$JM_COMMON_HELP
USAGE
}

jm_extra_option() {
  case $1 in
    --yes) yes=1 ;;
    *) return 1 ;;
  esac
}

jm_parse "$@"
jm_require project zone name

flags=(--project="$JM_PROJECT" --zone="$JM_ZONE")
((yes)) && flags+=(--quiet)
if ((JM_QUEUED)); then
  jm_gcloud compute tpus queued-resources delete "$JM_QR_NAME" "${flags[@]}" --force \
    ${JM_ARGS[@]+"${JM_ARGS[@]}"}
else
  jm_gcloud compute tpus tpu-vm delete "$JM_TPU_NAME" "${flags[@]}" ${JM_ARGS[@]+"${JM_ARGS[@]}"}
fi
