"""Writing an HF ``from_pretrained`` directory: ``config.json``, ``model.safetensors``, files.

A family's ``export`` turns its params into an HF state dict and config; :func:`write_pretrained`
writes them (local or ``gs://``) into a directory that must not exist yet or be empty: a
user's folder is never overwritten. Tensors are float32, contiguous, in torch's layout. A run
started from an HF directory (``config.init.hf``) goes back with that directory's description
(:func:`init_hf_description`: its config and tokenizer files, the run's copy of them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np


class Description(NamedTuple):
    """What an HF directory says of its model, beside the weights."""

    hf_config: Any  # the transformers config of its config.json
    architecture: str  # the one class config.json names
    config_json: dict  # config.json as a dict, float32 ("dtype"): what an export writes
    files: dict[str, bytes]  # every other file but the weights (the tokenizer's)


def init_hf_description(config) -> Description | None:
    """The :class:`Description` of the run's ``config.init.hf`` directory, or None without one."""
    from jaxmodels.convert.read import description_files, hf_config, local_dir

    hf_dir = (config.get("init") or {}).get("hf", "")
    if not hf_dir:
        return None
    with local_dir(hf_dir, key="config.init.hf", weights=False) as local:
        cfg, arch = hf_config(local, key="config.init.hf")
    files = description_files(hf_dir, key="config.init.hf")
    as_json = {**json.loads(files.pop("config.json")), "dtype": "float32"}
    as_json.pop("torch_dtype", None)
    return Description(cfg, arch, as_json, files)


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
