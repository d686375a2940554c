#!/usr/bin/env bash
# Runs ON a TPU worker (setup.sh copies it there): Python >= 3.11 venv, jax[tpu], jaxmodels.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: ${0##*/} (--git URL [--branch B] | --tarball FILE) [options]

Sets up one TPU worker: a Python >= 3.11 virtualenv, "jax[tpu]", and jaxmodels installed
editable (with its extras) from a fresh git clone or from a tarball of a local checkout.
Normally run by setup.sh on every worker; safe to rerun (replaces the checkout, keeps the venv).

Options:
  --git URL        clone this repository            --branch B   its branch or tag (main)
  --tarball FILE   unpack this .tar.gz instead of cloning
  --dir DIR        checkout directory (jaxmodels)   --venv DIR   virtualenv (jm-venv)
  --python VER     minimum Python version (3.11); JM_PYTHON=/path/python forces one
  --jax SPEC       pip requirement for JAX ("jax[tpu]")
  --extras LIST    jaxmodels extras to install (tpu)
  --pip "SPECS"    more pip requirements, space-separated (e.g. "gcsfs google-cloud-storage")
  --constraints F  pip constraints file applied to every install (the pinned jax/jaxlib)
  --logs DIR       launch.sh's log directory: refuse while its latest run is alive
  --fresh          recreate the virtualenv
USAGE
}

die() {
  printf '%s: error: %s\n' "$(hostname)" "$*" >&2
  exit 2
}

git_url="" branch=main tarball="" dir=jaxmodels venv=jm-venv python_min=3.11
jax_spec="jax[tpu]" extras=tpu pip_extra="" constraints="" logs="" fresh=0
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --fresh) fresh=1; shift; continue ;;
    --git | --branch | --tarball | --dir | --venv | --python | --jax | --extras | --pip \
      | --constraints | --logs)
      (($# >= 2)) || die "option $1 needs a value" ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
  case $1 in
    --git) git_url=$2 ;;
    --branch) branch=$2 ;;
    --tarball) tarball=$2 ;;
    --dir) dir=$2 ;;
    --venv) venv=$2 ;;
    --python) python_min=$2 ;;
    --jax) jax_spec=$2 ;;
    --extras) extras=$2 ;;
    --pip) pip_extra=$2 ;;
    --constraints) constraints=$2 ;;
    --logs) logs=$2 ;;
  esac
  shift 2
done
[[ -n $git_url || -n $tarball ]] || die "give --git URL or --tarball FILE"
[[ -n $git_url && -n $tarball ]] && die "give only one of --git and --tarball"
[[ $python_min =~ ^3\.[0-9]+$ ]] || die "bad --python '$python_min' (want e.g. 3.11)"
for path in "$dir" "$venv"; do
  [[ -n $path && $path != / && $path != . && $path != .. && $path != "$HOME" ]] \
    || die "refusing to use '$path' as a directory to replace"
done
cd "$HOME"
# Absolute paths, so that pip reads "$dir[extras]" as a directory, not a PyPI name.
[[ $dir == /* ]] || dir=$HOME/$dir
[[ $venv == /* ]] || venv=$HOME/$venv
[[ -z $tarball || $tarball == /* ]] || tarball=$HOME/$tarball
[[ -z $constraints || $constraints == /* ]] || constraints=$HOME/$constraints
[[ -z $logs || $logs == /* ]] || logs=$HOME/$logs

# The code of a live run is not replaced under it (its imports would change mid-run).
if [[ -n $logs && -e $logs/latest.pid ]] && kill -0 "$(cat "$logs/latest.pid")" 2>/dev/null; then
  die "run $(basename "$(readlink "$logs/latest.pid")" .pid) (pid $(cat "$logs/latest.pid")) is \
still running from $dir; stop it first (stop.sh), then rerun setup.sh"
fi

# Prints a Python interpreter >= python_min, or nothing.
find_python() {
  local minor=${python_min#3.} candidate
  if [[ -n ${JM_PYTHON:-} ]]; then
    printf '%s' "$JM_PYTHON"
    return
  fi
  for candidate in python3.13 python3.12 "python3.$minor" python3; do
    if command -v "$candidate" >/dev/null \
      && "$candidate" -c "import sys; sys.exit(sys.version_info < (3, $minor))" 2>/dev/null \
      && "$candidate" -c "import venv, ensurepip" 2>/dev/null; then
      command -v "$candidate"
      return
    fi
  done
}

make_venv() {
  local python
  python=$(find_python)
  if [[ -n $python ]]; then
    echo "$(hostname): venv $venv from $python"
    "$python" -m venv "$venv"
    return
  fi
  # The image's Python is too old (Ubuntu 22.04 ships 3.10): let uv fetch a managed one.
  echo "$(hostname): no Python >= $python_min with venv; installing one with uv"
  export PATH="$HOME/.local/bin:$PATH"
  if ! command -v uv >/dev/null; then
    python3 -m pip install --user --quiet --upgrade uv \
      || curl -LsSf https://astral.sh/uv/install.sh | sh
  fi
  uv venv --seed --python "$python_min" "$venv"
}

if ((fresh)) || [[ ! -x $venv/bin/python ]]; then
  rm -rf "$venv"
  make_venv
fi

rm -rf "$dir"
if [[ -n $git_url ]]; then
  git clone --depth 1 --branch "$branch" "$git_url" "$dir"
else
  mkdir -p "$dir"
  tar -xzf "$tarball" -C "$dir"
fi

pip=("$venv/bin/python" -m pip install --upgrade)
[[ -z $constraints ]] || pip+=(-c "$constraints")
"${pip[@]}" pip
read -r -a more <<<"$pip_extra"
"${pip[@]}" "$jax_spec" ${more[@]+"${more[@]}"}
if [[ -n $extras ]]; then
  "${pip[@]}" -e "${dir}[$extras]"
else
  "${pip[@]}" -e "$dir"
fi
"$venv/bin/python" -c "import jax, jaxmodels; print('$(hostname): jax', jax.__version__, 'ok')"
