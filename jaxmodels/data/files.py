"""Reading bytes from local paths or fsspec URLs (``gs://`` with the ``gcs`` extra)."""

from __future__ import annotations

import functools


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


@functools.cache
def filesystem(protocol: str):
    """The fsspec filesystem of ``protocol`` (one per process)."""
    try:
        import fsspec
    except ImportError as e:
        raise ImportError(f"{protocol}:// paths need fsspec: pip install 'jaxmodels[gcs]'") from e
    return fsspec.filesystem(protocol)


def open_file(url: str, block_size: int = 1 << 22):
    """A binary file object; remote files read ahead ``block_size`` bytes at a time."""
    try:
        if is_remote(url):
            return filesystem(url.split("://", 1)[0]).open(url, "rb", block_size=block_size)
        return open(url.removeprefix("file://"), "rb")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{url} does not exist") from e


def read_range(url: str, start: int, size: int) -> bytes:
    """``size`` bytes of ``url`` from ``start`` (fewer at its end): one ranged read."""
    if is_remote(url):
        return filesystem(url.split("://", 1)[0]).cat_file(url, start=start, end=start + size)
    with open(url.removeprefix("file://"), "rb") as f:
        f.seek(start)
        return f.read(size)


def read_file(url: str) -> bytes:
    """The whole file."""
    if is_remote(url):
        return filesystem(url.split("://", 1)[0]).cat_file(url)
    with open(url.removeprefix("file://"), "rb") as f:
        return f.read()


def join(directory: str, path: str) -> str:
    """``path`` relative to ``directory`` unless it is absolute or a URL."""
    if path.startswith("/") or "://" in path or not directory:
        return path
    return f"{directory.rstrip('/')}/{path}"


def parent(url: str) -> str:
    """The folder of a path or URL ("" for a bare file name)."""
    return url.rsplit("/", 1)[0] if "/" in url.split("://", 1)[-1] else ""
