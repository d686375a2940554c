"""Writing an HF ``from_pretrained`` directory: ``config.json``, ``model.safetensors``, files.

A family's ``export`` turns its params into an HF state dict and config; :func:`write_pretrained`
writes them (local or ``gs://``) into a directory that must not exist yet or be empty: a
user's folder is never overwritten. Tensors are float32, contiguous, in torch's layout. A run
started from an HF directory (``config.init.hf``) goes back with that directory's description
(:func:`init_hf_description`: its config and tokenizer files, the run's copy of them), its
``preprocessor_config.json`` stating the run's image normalisation (:func:`with_preprocessor`).
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
    images: Any = None  # its preprocessor_config.json (convert.read.ImageProcessing), or None


def init_hf_description(config) -> Description | None:
    """The :class:`Description` of the run's ``config.init.hf`` directory, or None without one."""
    from jaxmodels.convert.read import description_files, hf_config, image_processing, local_dir

    hf_dir = (config.get("init") or {}).get("hf", "")
    if not hf_dir:
        return None
    with local_dir(hf_dir, key="config.init.hf", weights=False) as local:
        cfg, arch = hf_config(local, key="config.init.hf")
    files = description_files(hf_dir, key="config.init.hf")
    as_json = {**json.loads(files.pop("config.json")), "dtype": "float32"}
    as_json.pop("torch_dtype", None)
    images = image_processing(hf_dir, key="config.init.hf")
    return Description(cfg, arch, as_json, files, images)


def with_preprocessor(source: Description, build, defaults: Mapping) -> dict[str, bytes]:
    """``source.files`` with a ``preprocessor_config.json`` normalising images as the run does:
    ``build(hf_config)``'s module with the directory's statistics
    (:func:`jaxmodels.convert.fill.with_image_processing`, the run's own: a run never changes
    them), rescaled by 1/255. The directory's file keeps its other keys (resize, crop,
    resampling: the image size is config.json's, as in the run); without one, ``defaults`` (the
    HF image processor class and its sizes for the checkpoint's image size) stand in."""
    from jaxmodels.convert.fill import with_image_processing
    from jaxmodels.convert.read import PREPROCESSOR

    model = build(source.hf_config)
    model = with_image_processing(model, source.hf_config, source.images, key="config.init.hf")
    own = source.files.get(PREPROCESSOR)
    spec = json.loads(own) if own is not None else dict(defaults)
    spec |= dict(do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                 image_mean=list(model.image_mean), image_std=list(model.image_std))  # fmt: skip
    text = json.dumps(spec, indent=2, sort_keys=True) + "\n"
    return {**source.files, PREPROCESSOR: text.encode()}


def host_float32(params) -> dict:
    """Nested params (jax arrays, maybe boxed) as float32 numpy: what an export writes."""
    import flax.linen as nn
    import jax

    return jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), nn.unbox(params))


def imported_source(config, out_dir: str, architectures, refusal: str) -> Description:
    """The :class:`Description` of a run started from an HF directory (``config.init.hf``) of
    one of ``architectures``, ``out_dir`` checked (:func:`check_out_dir`). A run started from
    anything else has no HF counterpart: ``refusal`` says why, and nothing is written."""
    source = init_hf_description(config)
    if source is None or source.architecture not in architectures:
        raise ValueError(f"export: {refusal}")
    check_out_dir(out_dir)
    return source


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
