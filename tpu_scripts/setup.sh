#!/usr/bin/env bash
# Sets up every TPU worker: Python >= 3.11 venv, jax[tpu], and this package with its tpu extra.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

JM_GIT_URL=${JM_GIT_URL:-}
JM_GIT_BRANCH=${JM_GIT_BRANCH:-main}
JM_LOCAL_DIR=${JM_LOCAL_DIR:-$JM_REPO_ROOT}
JM_PYTHON_VERSION=${JM_PYTHON_VERSION:-3.11}
JM_JAX_SPEC=${JM_JAX_SPEC:-jax[tpu]}
JM_EXTRAS=${JM_EXTRAS:-tpu}
JM_PIP_EXTRA=${JM_PIP_EXTRA-gcsfs google-cloud-storage}
JM_CONSTRAINTS=${JM_CONSTRAINTS:-$JM_SCRIPTS_DIR/constraints.txt}
JM_FRESH=0

usage() {
  cat <<USAGE
Usage: $JM_SCRIPT [options]

Installs jaxmodels on every worker (JM_WORKER, default all) of the TPU VM: copies
remote_setup.sh there and runs it, which makes a Python >= 3.11 virtualenv (\$HOME/$JM_VENV),
pip-installs "jax[tpu]" and this package editable with its 'tpu' extra into \$HOME/$JM_REMOTE_DIR,
every install constrained by one pins file (JM_CONSTRAINTS, copied to all workers), so all
workers run the same jax/jaxlib/libtpu. Refuses to replace the code on a worker whose latest
launch.sh run is still alive (stop.sh first).
The code comes from a git URL, or (default) from this local checkout: its tracked and
untracked-but-not-ignored files are packed and copied with 'tpu-vm scp --worker=all'.
Rerun it after changing the code. Needs project, zone and name.

Options:
  --git URL       JM_GIT_URL         clone this repository on the workers
  --branch B      JM_GIT_BRANCH      branch or tag to clone (main)
  --local DIR     JM_LOCAL_DIR       copy this checkout instead (default: $JM_REPO_ROOT)
  --python VER    JM_PYTHON_VERSION  minimum Python (3.11; uv fetches it if the image lacks it)
  --jax SPEC      JM_JAX_SPEC        pip requirement for JAX ("jax[tpu]")
  --extras LIST   JM_EXTRAS          jaxmodels extras (tpu)
  --pip "SPECS"   JM_PIP_EXTRA       more pip requirements (default "gcsfs google-cloud-storage":
                                     gs:// paths for orbax/etils without TensorFlow, and for
                                     tensorboardX event files; "" installs none)
  --fresh                            recreate the virtualenvs
$JM_COMMON_HELP
USAGE
}

jm_extra_option() {
  JM_SHIFT=2
  case $1 in
    --git) jm_need_value "$@"; JM_GIT_URL=$2 ;;
    --branch) jm_need_value "$@"; JM_GIT_BRANCH=$2 ;;
    --local) jm_need_value "$@"; JM_LOCAL_DIR=$2; JM_GIT_URL="" ;;
    --python) jm_need_value "$@"; JM_PYTHON_VERSION=$2 ;;
    --jax) jm_need_value "$@"; JM_JAX_SPEC=$2 ;;
    --extras) jm_need_value "$@"; JM_EXTRAS=$2 ;;
    --pip) jm_need_value "$@"; JM_PIP_EXTRA=$2 ;;
    --constraints) jm_need_value "$@"; JM_CONSTRAINTS=$2 ;;
    --fresh) JM_FRESH=1; JM_SHIFT=1 ;;
    *) return 1 ;;
  esac
}

# Writes a .tar.gz of the checkout $1 (git: tracked + untracked-not-ignored files) to $2.
pack_checkout() {
  local root=$1 out=$2 file
  [[ -f $root/pyproject.toml ]] || jm_die "no pyproject.toml in '$root' (JM_LOCAL_DIR/--local)"
  if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$root" ls-files -z --cached --others --exclude-standard \
      | while IFS= read -r -d '' file; do
        [[ -e $root/$file ]] && printf '%s\0' "$file"
      done | tar -C "$root" -czf "$out" --null -T -
  else
    tar -C "$root" -czf "$out" --exclude=.git --exclude=.venv --exclude=__pycache__ .
  fi
}

jm_parse "$@"
jm_require project zone name
((${#JM_ARGS[@]} == 0)) || jm_die "unexpected arguments after --: ${JM_ARGS[*]}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[[ -f $JM_CONSTRAINTS ]] || jm_die "constraints file '$JM_CONSTRAINTS' not found (JM_CONSTRAINTS)"
cp "$JM_SCRIPTS_DIR/remote_setup.sh" "$tmp/jm_remote_setup.sh"
cp "$JM_CONSTRAINTS" "$tmp/jm_constraints.txt"
files=("$tmp/jm_remote_setup.sh" "$tmp/jm_constraints.txt")
remote=(bash jm_remote_setup.sh)
if [[ -n $JM_GIT_URL ]]; then
  remote+=(--git "$JM_GIT_URL" --branch "$JM_GIT_BRANCH")
else
  pack_checkout "$JM_LOCAL_DIR" "$tmp/jm_src.tar.gz"
  files+=("$tmp/jm_src.tar.gz")
  remote+=(--tarball jm_src.tar.gz)
fi
remote+=(--dir "$JM_REMOTE_DIR" --venv "$JM_VENV" --python "$JM_PYTHON_VERSION"
  --jax "$JM_JAX_SPEC" --extras "$JM_EXTRAS" --pip "$JM_PIP_EXTRA"
  --constraints jm_constraints.txt --logs "$JM_LOG_DIR")
((JM_FRESH)) && remote+=(--fresh)

jm_scp "${files[@]}" ""
jm_ssh "$(jm_quote_words "${remote[@]}")"
