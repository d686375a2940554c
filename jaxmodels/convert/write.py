"""Writing an HF ``from_pretrained`` directory: ``config.json``, ``model.safetensors``, files.

A family's ``export`` turns its params into an HF state dict and config; :func:`write_pretrained`
writes them (local or ``gs://``) into a directory that must not exist yet or be empty: a
user's folder is never overwritten. Tensors are float32, contiguous, in torch's layout.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np


def check_out_dir(out_dir: str, *, key: str = "--out") -> None:
    """Refuses an ``out_dir`` that exists and holds anything (or is a file)."""
    from etils import epath

    out = epath.Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"{key}={os.fspath(out_dir)!r} exists and is not an empty directory; name a new one "
            "(nothing was written)"
        )


def write_pretrained(
    out_dir: str,
    hf_config: Mapping,
    state: Mapping[str, np.ndarray],
    files: Mapping[str, bytes] | None = None,
    *,
    key: str = "--out",
) -> list[str]:
    """Writes ``config.json`` (``hf_config``), ``model.safetensors`` (``state``) and ``files``
    (e.g. the tokenizer's) into ``out_dir``; returns the names written."""
    from etils import epath
    from safetensors.numpy import save

    check_out_dir(out_dir, key=key)
    # np.require keeps a 0-d tensor 0-d (np.ascontiguousarray makes it 1-d: CLIP's logit_scale)
    tensors = {k: np.require(v, np.float32, "C") for k, v in state.items()}
    blobs = {
        "config.json": (json.dumps(dict(hf_config), indent=2, sort_keys=True) + "\n").encode(),
        "model.safetensors": save(tensors, metadata={"format": "pt"}),
        **(files or {}),
    }
    out = epath.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in blobs.items():
        (out / name).write_bytes(data)
    return sorted(blobs)
