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
    tokenizer: Any | None = None  # the directory's tokenizer (data.tokenizers), when it has one


# Files of an HF directory that hold weights; every other file (config.json, the tokenizer's
# files, generation_config.json) describes the model and is small.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt", ".index.json",
                   ".gguf", ".onnx", ".npz", ".npy", ".pkl")  # fmt: skip


def is_weight_file(name: str) -> bool:
    return name.endswith(WEIGHT_SUFFIXES)


def read(src: Any, *, key: str = "from_hf", weights: bool = True) -> Checkpoint:
    """Reads a ``transformers`` model or an HF directory (``key`` names it in errors).

    ``weights=False`` reads a directory's config and tokenizer only (``state`` is empty): what
    building the module takes, for a run that restores its own checkpoint.
    """
    if isinstance(src, str | os.PathLike):
        with local_dir(os.fspath(src), key=key, weights=weights) as local:
            return _read_dir(local, key, weights)
    if not hasattr(src, "state_dict") or not hasattr(src, "config"):
        raise TypeError(f"{key} expects a transformers model or a directory, got {type(src)}")
    state = {k: v.detach().float().cpu().numpy() for k, v in src.state_dict().items()}
    return Checkpoint(src.config, type(src).__name__, state)


@contextlib.contextmanager
def local_dir(path: str, *, key: str = "from_hf", weights: bool = True):
    """Yields ``path`` itself when local, else a temporary local copy of its files (without
    the weight files when ``weights=False``)."""
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
            if item.is_file() and (weights or not is_weight_file(item.name)):
                (epath.Path(tmp) / item.name).write_bytes(item.read_bytes())
        yield tmp


def read_tokenizer(path: str):
    """The directory's tokenizer (``tokenizer.json``, else a SentencePiece model, with its
    ``tokenizer_config.json``; :func:`jaxmodels.data.tokenizers.find_tokenizer`), or ``None``."""
    from jaxmodels.data.tokenizers import find_tokenizer

    try:
        return find_tokenizer(path)
    except ImportError as e:
        raise MissingHFError(
            f"the tokenizer in {path} needs the tokenizers/sentencepiece packages ({e}): "
            "pip install 'jaxmodels[hf]'"
        ) from e


def description_files(path: str, *, key: str = "from_hf") -> dict[str, bytes]:
    """``{name: bytes}`` of every file of an HF directory but the weights (local or gs://)."""
    from etils import epath

    with local_dir(path, key=key, weights=False) as local:
        root = epath.Path(local)
        return {
            p.name: p.read_bytes()
            for p in root.iterdir()
            if p.is_file() and not is_weight_file(p.name)
        }


def hf_config(path: str, *, key: str = "from_hf"):
    """The ``transformers`` config of ``path/config.json`` and the one architecture it names."""
    cfg_file = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_file):
        raise FileNotFoundError(f"{key}: no config.json in {path!r}")
    AutoConfig = require_transformers(key).AutoConfig
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    archs = getattr(config, "architectures", None) or []
    if len(archs) != 1:
        raise ValueError(f"{key}: {cfg_file} must name exactly one architecture, got {archs}")
    return config, archs[0]


class MissingHFError(ImportError):
    """A package of the ``hf`` extra (transformers, tokenizers, sentencepiece) is missing."""


def require_transformers(key: str):
    """The ``transformers`` module; without it an error naming the ``hf`` extra."""
    try:
        import transformers
    except ImportError as e:
        raise MissingHFError(
            f"{key}: reading an HF checkpoint's config.json needs the transformers package "
            f"({e}): pip install 'jaxmodels[hf]'"
        ) from e
    return transformers


def _read_dir(path: str, key: str, weights: bool) -> Checkpoint:
    config, arch = hf_config(path, key=key)
    tokenizer = read_tokenizer(path)
    if not weights:
        return Checkpoint(config, arch, {}, tokenizer)
    from safetensors.numpy import load_file

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
    return Checkpoint(config, arch, state, tokenizer)
