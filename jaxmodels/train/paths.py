"""One path type for every file the core touches, local or in an object store (``gs://``).

``etils.epath`` is the abstraction orbax already uses: a local path is a ``pathlib`` path, a
``gs://bucket/run`` path goes through ``gcsfs`` (install the ``gcs`` extra). Nothing here turns a
URI into a local folder: ``os.path.abspath("gs://b/run")`` would give ``<cwd>/gs:/b/run``.
"""

from __future__ import annotations

import os

from etils import epath

PathLike = str | os.PathLike


def path(p: PathLike) -> epath.Path:
    """Returns ``p`` as an ``epath.Path``; local paths are made absolute, URIs are kept."""
    s = os.fspath(p)
    if is_uri(s):
        return epath.Path(s)
    return epath.Path(os.path.abspath(os.path.expanduser(s)))


def is_uri(p: PathLike) -> bool:
    """True for object-store paths such as ``gs://bucket/run`` (anything with a scheme)."""
    return "://" in os.fspath(p)


def check_workdir(workdir: PathLike, *, must_exist: bool) -> epath.Path:
    """Returns the workdir path after checking it is usable, naming it otherwise.

    ``must_exist`` is for the read-only commands (eval, sample): they never create it.
    """
    p = path(workdir)
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(f"--workdir {workdir} is a file, not a directory")
    if must_exist and not p.exists():
        raise FileNotFoundError(
            f"--workdir {workdir} does not exist; train first with "
            f"`jaxmodels train --config ... --workdir {workdir}`"
        )
    return p


def write_text(p: epath.Path, text: str) -> None:
    """Writes a whole file (object stores have no append: small files are rewritten)."""
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
