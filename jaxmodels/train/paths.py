"""One path type for every file the core touches, local or in an object store (``gs://``).

``etils.epath`` is the abstraction orbax already uses: a local path is a ``pathlib`` path, a
``gs://bucket/run`` path goes through ``gcsfs`` (install the ``gcs`` extra). Nothing here turns a
URI into a local folder: ``os.path.abspath("gs://b/run")`` would give ``<cwd>/gs:/b/run``.
"""

from __future__ import annotations

import contextlib
import errno
import os

from etils import epath

PathLike = str | os.PathLike
EXTRAS = {"gs": ("gcsfs", "gcs")}  # URI scheme -> (the module it needs, the extra that has it)


class MissingExtraError(ImportError):
    """A ``gs://`` path without the package that reads it (the ``gcs`` extra)."""


class WriteError(RuntimeError):
    """A file of the workdir could not be written (disk full, read-only, no permission)."""


def path(p: PathLike) -> epath.Path:
    """Returns ``p`` as an ``epath.Path``; local paths are made absolute, URIs are kept."""
    s = os.fspath(p)
    if is_uri(s):
        _check_extra(s)
        return epath.Path(s)
    return epath.Path(os.path.abspath(os.path.expanduser(s)))


def _check_extra(uri: str) -> None:
    scheme = uri.split("://", 1)[0]
    if scheme not in EXTRAS:
        return
    module, extra = EXTRAS[scheme]
    try:
        __import__(module)
    except ImportError as e:
        raise MissingExtraError(
            f"{uri}: {scheme}:// paths need the `{extra}` extra ({module} is not installed): "
            f"pip install 'jaxmodels[{extra}]'"
        ) from e


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


@contextlib.contextmanager
def naming_write_errors(p: epath.Path):
    """Turns an ``OSError`` while writing ``p`` into a ``WriteError`` naming ``p`` and the errno."""
    try:
        yield
    except OSError as e:
        code = errno.errorcode.get(e.errno, "")
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        hint = "; free some space there or use another --workdir" if full else ""
        raise WriteError(
            f"cannot write {p}: {e.strerror or e} (errno {e.errno} {code}){hint}"
        ) from e


def write_text(p: epath.Path, text: str) -> None:
    """Writes a whole file so that no reader ever sees it cut short (object stores have no
    append: small files are rewritten). Locally the text goes to a temporary file in the same
    folder, renamed over ``p`` once complete; on an object store one object write is atomic."""
    with naming_write_errors(p):
        p.parent.mkdir(parents=True, exist_ok=True)
        if is_uri(p):
            p.write_text(text)
            return
        tmp = p.parent / f".{p.name}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        finally:
            tmp.unlink(missing_ok=True)


def remove_empty_dirs(p: epath.Path) -> None:
    """Removes the local folder ``p`` and its sub-folders as far as they hold no file (``rmdir``
    never removes a file). For a workdir that a failed start created; object stores have no
    empty folders."""
    if is_uri(p):
        return
    for folder, _, _ in os.walk(p, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(folder)
