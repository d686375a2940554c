"""Reading an HF checkpoint: ``read(src) -> Checkpoint(config, architecture, state, tokenizer)``.

``src`` is an in-memory ``transformers`` PyTorch model or a directory holding ``config.json``
and safetensors weights (``model.safetensors`` or a sharded index): local, or in an object store
(``gs://bucket/dir``, copied to a local temporary folder first, since safetensors reads local
files). Nothing is downloaded from a hub. The state is float32 numpy; what it means is the
business of the family whose ``models/<family>/hf.py`` lists the architecture.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One HF checkpoint as read: nothing converted yet."""

    config: Any  # the transformers config (attributes as in its PretrainedConfig)
    architecture: str  # e.g. "LlamaForCausalLM": the class name of the model
    state: dict[str, np.ndarray]  # the state dict, float32 numpy
    tokenizer: Any | None = None  # HFTokenizer of the directory's tokenizer.json, when present


def read(src: Any, *, key: str = "from_hf") -> Checkpoint:
    """Reads a ``transformers`` model or an HF directory (``key`` names it in errors)."""
    if isinstance(src, str | os.PathLike):
        with local_dir(os.fspath(src), key=key) as local:
            return _read_dir(local, key)
    if not hasattr(src, "state_dict") or not hasattr(src, "config"):
        raise TypeError(f"{key} expects a transformers model or a directory, got {type(src)}")
    state = {k: v.detach().float().cpu().numpy() for k, v in src.state_dict().items()}
    return Checkpoint(src.config, type(src).__name__, state)


@contextlib.contextmanager
def local_dir(path: str, *, key: str = "from_hf"):
    """Yields ``path`` itself when local, else a temporary local copy of its files."""
    from etils import epath

    if "://" not in os.fspath(path):
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{key}={path!r} is not a directory")
        yield os.fspath(path)
        return
    remote = epath.Path(path)
    if not remote.is_dir():
        raise FileNotFoundError(f"{key}={path!r} is not a directory")
    with tempfile.TemporaryDirectory(prefix="jaxmodels_hf_") as tmp:
        for item in remote.iterdir():
            if item.is_file():
                (epath.Path(tmp) / item.name).write_bytes(item.read_bytes())
        yield tmp


def read_tokenizer(path: str):
    """The ``HFTokenizer`` of ``path/tokenizer.json``, or ``None`` when there is none."""
    from jaxmodels.data.tokenizers import HFTokenizer

    tok_file = os.path.join(path, "tokenizer.json")
    return HFTokenizer(tok_file) if os.path.isfile(tok_file) else None


def _read_dir(path: str, key: str) -> Checkpoint:
    from safetensors.numpy import load_file
    from transformers import AutoConfig

    cfg_file = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_file):
        raise FileNotFoundError(f"{key}: no config.json in {path!r}")
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    archs = getattr(config, "architectures", None) or []
    if len(archs) != 1:
        raise ValueError(f"{key}: {cfg_file} must name exactly one architecture, got {archs}")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.isfile(os.path.join(path, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"{key}: no model.safetensors (or index) in {path!r}")
    state = {}
    for name in files:
        state.update(load_file(os.path.join(path, name)))
    state = {k: np.asarray(v, np.float32) for k, v in state.items()}
    return Checkpoint(config, archs[0], state, read_tokenizer(path))
