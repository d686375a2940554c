"""Reading an HF checkpoint: ``read(src) -> Checkpoint(config, architecture, state, tokenizer)``.

``src`` is an in-memory ``transformers`` PyTorch model or a directory holding ``config.json``
and safetensors weights (``model.safetensors`` or a sharded index): local, or in an object store
(``gs://bucket/dir``, copied to a local temporary folder first, since safetensors reads local
files). Nothing is downloaded from a hub. The state is float32 numpy; what it means is the
business of the family whose ``models/<family>/hf.py`` lists the architecture. A directory's
``preprocessor_config.json`` (an HF image processor) gives its images' normalisation
(:func:`image_processing`); an in-memory model has no image processor (``transformers`` keeps
that in a separate object), so it has none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One HF checkpoint as read: nothing converted yet."""

    config: Any  # the transformers config (attributes as in its PretrainedConfig)
    architecture: str  # e.g. "LlamaForCausalLM": the class name of the model
    state: dict[str, np.ndarray]  # the state dict, float32 numpy
    tokenizer: Any | None = None  # the directory's tokenizer (data.tokenizers), when it has one
    images: ImageProcessing | None = None  # its preprocessor_config.json, when it has one


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
        images = image_processing(os.fspath(src), key=key)
        with local_dir(os.fspath(src), key=key, weights=weights) as local:
            return dataclasses.replace(_read_dir(local, key, weights), images=images)
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


PREPROCESSOR = "preprocessor_config.json"


@dataclasses.dataclass(frozen=True)
class ImageProcessing:
    """A directory's image normalisation as a module applies it to ``x / 255`` (``x`` the uint8
    pixels): ``(x / 255 - mean) / std`` per channel. ``None`` leaves the architecture's own."""

    file: str  # the preprocessor_config.json it came from (errors name it)
    mean: tuple[float, ...] | None  # image_mean (0 when do_normalize is false)
    std: tuple[float, ...] | None  # image_std (1 when do_normalize is false), every one > 0
    size: tuple[int, int] | None  # (height, width) the processor gives the model, when it is fixed
    size_key: str = ""  # the key that fixes it: crop_size (center crop) or size


def image_processing(path: str, *, key: str = "from_hf") -> ImageProcessing | None:
    """The normalisation of ``path/preprocessor_config.json`` (local or gs://), or ``None`` when
    the directory has no such file (the architecture's default statistics then apply).

    ``image_mean`` / ``image_std`` are 3 numbers each, std > 0; ``do_normalize: false`` means
    mean 0 and std 1; a rescale other than HF's default ``x / 255`` (``do_rescale``,
    ``rescale_factor``) is folded into them. A malformed file is refused naming it and the key.
    """
    from etils import epath

    file = epath.Path(path) / PREPROCESSOR
    if not file.is_file():
        return None
    where = f"{key}: {os.fspath(file)}"
    try:
        spec = json.loads(file.read_text())
    except ValueError as e:
        raise ValueError(f"{where} is not JSON ({e})") from e
    if not isinstance(spec, dict):
        raise ValueError(f"{where} holds {type(spec).__name__}, not a JSON object")
    flag = functools.partial(_flag, spec, where)
    mean, std = (_channels(spec, k, where) for k in ("image_mean", "image_std"))
    if not flag("do_normalize"):
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    factor = spec.get("rescale_factor", 1 / 255) if flag("do_rescale") else 1.0
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not factor > 0:
        raise ValueError(f"{where}: rescale_factor={factor!r} must be a number > 0")
    unit = 255.0 * factor  # the processor's pixels x * factor are (x / 255) * unit
    if not math.isclose(unit, 1.0, rel_tol=1e-6):
        if mean is None or std is None:
            raise ValueError(
                f"{where}: rescale_factor={factor!r} (do_rescale) with no image_mean / image_std "
                "to fold it into: give both"
            )
        mean, std = (tuple(v / unit for v in stats) for stats in (mean, std))
    size_key = "crop_size" if flag("do_center_crop", "crop_size" in spec) else "size"
    size = _hw(spec.get(size_key), size_key, where)
    return ImageProcessing(os.fspath(file), mean, std, size, size_key if size else "")


def _flag(spec: Mapping, where: str, name: str, default: bool = True) -> bool:
    value = spec.get(name, default)
    if not isinstance(value, bool):
        raise ValueError(f"{where}: {name}={value!r} must be true or false")
    return value


def _channels(spec: Mapping, name: str, where: str) -> tuple[float, ...] | None:
    """``spec[name]``: three finite numbers (std: each > 0), or ``None`` when absent."""
    value = spec.get(name)
    if value is None:
        return None
    ok = isinstance(value, list) and len(value) == 3
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ok = ok and all(math.isfinite(v) and (name != "image_std" or v > 0) for v in value)
    if not ok:
        what = "3 numbers > 0" if name == "image_std" else "3 finite numbers"
        raise ValueError(f"{where}: {name}={value!r} must be {what} (one per RGB channel)")
    return tuple(float(v) for v in value)


def _hw(value, name: str, where: str) -> tuple[int, int] | None:
    """HF's size forms: ``n`` or ``{"height": h, "width": w}`` -> (h, w); ``shortest_edge`` and
    the like fix no output size (``None``)."""
    if value is None or (isinstance(value, dict) and not {"height", "width"} & set(value)):
        return None
    hw = (value.get("height"), value.get("width")) if isinstance(value, dict) else (value, value)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in hw):
        raise ValueError(f"{where}: {name}={value!r} must be a size > 0 or height and width")
    return hw


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
