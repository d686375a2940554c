# shellcheck shell=bash disable=SC2034  # the JM_* variables are read by the sourcing scripts
# Shared flag parsing and gcloud helpers for tpu_scripts/*.sh (sourced, never run).
#
# Settings come from flags or environment variables (flags win):
#   --project     JM_PROJECT      Google Cloud project id
#   --zone        JM_ZONE         zone, e.g. us-west4-a
#   --name        JM_TPU_NAME     TPU VM (node) name
#   --accelerator JM_ACCELERATOR  accelerator type, e.g. v5litepod-16
#   --runtime     JM_RUNTIME      TPU runtime (software) version, e.g. v2-alpha-tpuv5-lite
#   --queued      JM_QUEUED=1     the node belongs to a queued resource
#   --qr-name     JM_QR_NAME      queued-resource id (default: <name>-qr)
#   --worker      JM_WORKER       worker(s) to act on: all, 0, 1-3, 0,2 (default: all)
#   --num-slices  JM_NUM_SLICES   multislice: N queued nodes named <name>-0 .. <name>-(N-1)
#   --iap, --internal-ip, --ssh-flag FLAG   JM_SSH_FLAGS   extra flags for every ssh/scp
#   --dry-run     JM_DRY_RUN=1    print the gcloud commands instead of running them
# Remote layout on every worker (paths relative to $HOME unless absolute):
#   JM_REMOTE_DIR (jaxmodels)  checkout;  JM_VENV (jm-venv)  venv;  JM_LOG_DIR (jm-logs)  logs
# JM_GCLOUD names the gcloud executable (default: gcloud).

JM_SCRIPT=${0##*/}
JM_SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
JM_REPO_ROOT=$(dirname "$JM_SCRIPTS_DIR")

JM_PROJECT=${JM_PROJECT:-}
JM_ZONE=${JM_ZONE:-}
JM_TPU_NAME=${JM_TPU_NAME:-}
JM_ACCELERATOR=${JM_ACCELERATOR:-}
JM_RUNTIME=${JM_RUNTIME:-}
JM_QUEUED=${JM_QUEUED:-0}
JM_QR_NAME=${JM_QR_NAME:-}
JM_WORKER=${JM_WORKER:-all}
JM_NUM_SLICES=${JM_NUM_SLICES:-1}
read -r -a JM_SSH_FLAGS <<<"${JM_SSH_FLAGS:-}"
JM_DRY_RUN=${JM_DRY_RUN:-0}
JM_REMOTE_DIR=${JM_REMOTE_DIR:-jaxmodels}
JM_VENV=${JM_VENV:-jm-venv}
JM_LOG_DIR=${JM_LOG_DIR:-jm-logs}
JM_ARGS=()

JM_COMMON_HELP="Common options (flag or environment variable; flags win):
  --project ID         JM_PROJECT      Google Cloud project
  --zone ZONE          JM_ZONE         zone, e.g. us-west4-a
  --name NAME          JM_TPU_NAME     TPU VM (node) name
  --accelerator TYPE   JM_ACCELERATOR  accelerator type, e.g. v5litepod-16
  --runtime VERSION    JM_RUNTIME      TPU runtime version, e.g. v2-alpha-tpuv5-lite
  --queued             JM_QUEUED=1     the TPU is (to be) a queued resource
  --qr-name ID         JM_QR_NAME      queued-resource id (default: NAME-qr)
  --worker W           JM_WORKER       worker(s): all (default), 0, 1-3 or 0,2
  --num-slices N       JM_NUM_SLICES   multislice (queued): nodes NAME-0 .. NAME-(N-1), all addressed
  --iap                                ssh/scp through IAP (--tunnel-through-iap)
  --internal-ip                        ssh/scp to internal IPs (no external IP on the workers)
  --ssh-flag FLAG      JM_SSH_FLAGS    any other ssh/scp flag (repeatable; env: space-separated)
  --dry-run            JM_DRY_RUN=1    print the gcloud commands, run nothing
  -h, --help                           show this help
Remote layout (relative to \$HOME on each worker): JM_REMOTE_DIR=jaxmodels (checkout),
JM_VENV=jm-venv (virtualenv), JM_LOG_DIR=jm-logs (logs). JM_GCLOUD overrides 'gcloud'."

jm_die() {
  printf '%s: error: %s\n' "$JM_SCRIPT" "$*" >&2
  exit 2
}

# Called with the remaining arguments "$@": fails unless option $1 is followed by a value.
jm_need_value() {
  (($# >= 2)) || jm_die "option $1 needs a value"
}

# Parses the common options; script-specific ones go to the script's `jm_extra_option`
# hook, which consumes "$1" (and "$2"), sets JM_SHIFT, or returns 1 for unknown options.
# Everything after `--` lands in JM_ARGS. `--opt=value` equals `--opt value`.
jm_parse() {
  local -a argv=()
  while (($#)); do
    case $1 in
      --) argv+=("$@"); break ;;
      --*=*) argv+=("${1%%=*}" "${1#*=}"); shift ;;
      *) argv+=("$1"); shift ;;
    esac
  done
  set -- ${argv[@]+"${argv[@]}"}
  while (($#)); do
    JM_SHIFT=1
    case $1 in
      -h | --help) usage; exit 0 ;;
      --project) jm_need_value "$@"; JM_PROJECT=$2; JM_SHIFT=2 ;;
      --zone) jm_need_value "$@"; JM_ZONE=$2; JM_SHIFT=2 ;;
      --name) jm_need_value "$@"; JM_TPU_NAME=$2; JM_SHIFT=2 ;;
      --accelerator) jm_need_value "$@"; JM_ACCELERATOR=$2; JM_SHIFT=2 ;;
      --runtime) jm_need_value "$@"; JM_RUNTIME=$2; JM_SHIFT=2 ;;
      --queued) JM_QUEUED=1 ;;
      --qr-name) jm_need_value "$@"; JM_QR_NAME=$2; JM_SHIFT=2 ;;
      --worker) jm_need_value "$@"; JM_WORKER=$2; JM_SHIFT=2 ;;
      --num-slices) jm_need_value "$@"; JM_NUM_SLICES=$2; JM_SHIFT=2 ;;
      --iap) JM_SSH_FLAGS+=(--tunnel-through-iap) ;;
      --internal-ip) JM_SSH_FLAGS+=(--internal-ip) ;;
      --ssh-flag) jm_need_value "$@"; JM_SSH_FLAGS+=("$2"); JM_SHIFT=2 ;;
      --dry-run) JM_DRY_RUN=1 ;;
      --) shift; JM_ARGS=("$@"); break ;;
      *)
        if ! { declare -F jm_extra_option >/dev/null && jm_extra_option "$@"; }; then
          case $1 in
            -*) jm_die "unknown option '$1' (see --help)" ;;
            *) jm_die "unexpected argument '$1' (see --help)" ;;
          esac
        fi
        ;;
    esac
    shift "$JM_SHIFT"
  done
  JM_QR_NAME=${JM_QR_NAME:-${JM_TPU_NAME:+$JM_TPU_NAME-qr}}
  [[ $JM_NUM_SLICES =~ ^[1-9][0-9]*$ ]] || jm_die "bad --num-slices '$JM_NUM_SLICES' (JM_NUM_SLICES)"
  ((JM_NUM_SLICES == 1)) || JM_QUEUED=1  # several slices are always one queued resource
  jm_check_layout
}

# The TPU node names: NAME, or NAME-0 .. NAME-(N-1) for N slices (queued --node-prefix).
jm_nodes() {
  local i
  if ((JM_NUM_SLICES == 1)); then
    printf '%s\n' "$JM_TPU_NAME"
  else
    for ((i = 0; i < JM_NUM_SLICES; i++)); do printf '%s\n' "$JM_TPU_NAME-$i"; done
  fi
}

# Fails with the variable and flag to set for each named setting that is empty.
jm_require() {
  local key var flag
  for key in "$@"; do
    case $key in
      project) var=JM_PROJECT flag=--project ;;
      zone) var=JM_ZONE flag=--zone ;;
      name) var=JM_TPU_NAME flag=--name ;;
      accelerator) var=JM_ACCELERATOR flag=--accelerator ;;
      runtime) var=JM_RUNTIME flag=--runtime ;;
      *) jm_die "internal: unknown setting '$key'" ;;
    esac
    [[ -n ${!var:-} ]] || jm_die "$key is not set: export $var=... or pass $flag"
  done
  [[ $JM_WORKER =~ ^(all|[0-9]+([-,][0-9]+)*)$ ]] \
    || jm_die "bad worker '$JM_WORKER' (JM_WORKER/--worker): use all, 0, 1-3 or 0,2"
}

# Remote paths are spliced unquoted into remote shell commands: keep them to a safe set.
jm_check_layout() {
  local var
  for var in JM_REMOTE_DIR JM_VENV JM_LOG_DIR; do
    [[ ${!var} =~ ^[A-Za-z0-9_./-]+$ && ${!var} != . && ${!var} != .. && ${!var} != / ]] \
      || jm_die "$var='${!var}' must be a plain path of letters, digits, _ . / -"
  done
}

# Remote path for $1: absolute paths stay, others are under the remote $HOME.
jm_rpath() {
  # shellcheck disable=SC2016  # $HOME expands on the worker
  case $1 in
    /*) printf '%s' "$1" ;;
    *) printf '$HOME/%s' "$1" ;;
  esac
}

# Quotes one word for a POSIX shell; plain words stay readable.
jm_quote() {
  local s=$1 q="'\\''"
  if [[ -n $s && $s != *[!A-Za-z0-9_./:=@%+,-]* ]]; then
    printf '%s' "$s"
  else
    printf "'%s'" "${s//\'/$q}"
  fi
}

# Quotes each argument and joins them with spaces.
jm_quote_words() {
  local word sep=""
  for word in "$@"; do
    printf '%s%s' "$sep" "$(jm_quote "$word")"
    sep=" "
  done
}

# Echoes a command to stderr and runs it; with JM_DRY_RUN=1 prints it to stdout instead.
jm_run() {
  if [[ $JM_DRY_RUN == 1 ]]; then
    printf '%s\n' "$(jm_quote_words "$@")"
    return 0
  fi
  printf '+ %s\n' "$(jm_quote_words "$@")" >&2
  "$@"
}

jm_gcloud() {
  jm_run "${JM_GCLOUD:-gcloud}" "$@"
}

# Runs the shell command $1 on JM_WORKER of every node (several slices in parallel); extra
# gcloud flags follow. Fails if it failed on any node.
jm_ssh() {
  local command=$1 node rc=0
  local -a pids=()
  shift
  if ((JM_NUM_SLICES == 1)); then  # in the foreground: gcloud may ask for an ssh key passphrase
    jm_ssh_node "$JM_TPU_NAME" "$command" "$@"
    return
  fi
  while read -r node; do
    jm_ssh_node "$node" "$command" "$@" &
    pids+=($!)
  done < <(jm_nodes)
  for node in "${pids[@]}"; do
    wait "$node" || rc=$?
  done
  return "$rc"
}

jm_ssh_node() {
  local node=$1 command=$2
  shift 2
  jm_gcloud compute tpus tpu-vm ssh "$node" --project="$JM_PROJECT" --zone="$JM_ZONE" \
    --worker="$JM_WORKER" --command="$command" ${JM_SSH_FLAGS[@]+"${JM_SSH_FLAGS[@]}"} "$@"
}

# Copies local files $1.. (all but the last argument) to JM_WORKER of every node, into the
# remote directory given last (e.g. '' for $HOME).
jm_scp() {
  local -a files=("${@:1:$#-1}")
  local dest=${!#} node
  while read -r node; do
    jm_gcloud compute tpus tpu-vm scp "${files[@]}" "$node:$dest" --project="$JM_PROJECT" \
      --zone="$JM_ZONE" --worker="$JM_WORKER" ${JM_SSH_FLAGS[@]+"${JM_SSH_FLAGS[@]}"} || return
  done < <(jm_nodes)
}
