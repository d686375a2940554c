"""Import HF transformers PyTorch checkpoints: ``model, params = from_hf(hf_model_or_dir)``.

``hf_model_or_dir`` is an in-memory ``transformers`` PyTorch model or a directory holding
``config.json`` and safetensors weights (``model.safetensors`` or a sharded index): local, or
in an object store (``gs://bucket/dir``, copied to a local temporary folder first, since
``transformers`` and safetensors read local files). Nothing is downloaded from a hub.
Supported: ``SUPPORTED``. The module is the family's own where there is one, and returns
what the HF model returns (the last hidden state for ``*Model`` classes, logits for
``*ForMaskedLM``/``*ForCausalLM``):

- Llama: the ``lm`` family's ``DecoderLM``, ``apply(v, input_ids, positions, segment_ids)``
  (pass the attention mask as ``segment_ids``: padding is segment 0, tokens segment 1);
- RoFormer: the ``roformer`` family's ``RoFormer``, ``apply(v, input_ids, attention_mask)``;
- Bloom, T5 encoder: ``TokenTransformer``, ``apply(v, input_ids, attention_mask)``.

:func:`load_pretrained` adds the directory's ``tokenizer.json`` and :func:`init_from` turns the
params into a ``Task.init`` carrying the module's logical axis names, so a family can fine-tune
an import (``--config.init.hf=DIR``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxmodels.convert import hf_blip
from jaxmodels.convert.hf_arch import BUILDERS as _ARCH_BUILDERS

BUILDERS = {**_ARCH_BUILDERS, **hf_blip.BUILDERS}
SUPPORTED = tuple(BUILDERS)


def from_hf(hf_model_or_dir: Any, *, dtype=None) -> tuple[Any, dict]:
    """Returns ``(linen_module, params)`` equivalent to the HF model (see module docstring)."""
    config, arch, state = _load(hf_model_or_dir)
    if arch not in BUILDERS:
        raise ValueError(
            f"from_hf: architecture {arch!r} is not supported; supported: {', '.join(SUPPORTED)}"
        )
    build, convert = BUILDERS[arch]
    model = build(config, dtype)
    params = _fill(model, convert(state, config), arch, config)
    return model, params


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """An imported checkpoint: the family's module, its params and the directory's tokenizer."""

    model: Any
    params: dict
    tokenizer: Any | None  # the directory's tokenizer (data.tokenizers.find_tokenizer), or None


def load_pretrained(path: str, *, dtype=None) -> Pretrained:
    """``from_hf(path)`` plus the directory's tokenizer (``tokenizer.json``, else a SentencePiece
    model; :func:`jaxmodels.data.tokenizers.find_tokenizer`), None when it has neither."""
    from jaxmodels.data.tokenizers import find_tokenizer

    with local_dir(path, key="config.init.hf") as local:
        model, params = from_hf(local, dtype=dtype)
        tokenizer = find_tokenizer(local)
    return Pretrained(model, params, tokenizer)


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


def init_from(model, params: dict, *example_inputs):
    """A ``Task.init`` returning ``params`` boxed with ``model``'s logical axis names.

    The module's own initialisation supplies only the boxes (its random values are dropped).
    """
    is_box = lambda x: isinstance(x, nn.Partitioned)  # noqa: E731

    def init(rng):
        boxed = model.init(rng, *example_inputs)["params"]

        def fill(box, value):
            if is_box(box):
                return box.replace_boxed(jnp.asarray(value, box.value.dtype))
            return jnp.asarray(value, box.dtype)

        return jax.tree.map(fill, boxed, params, is_leaf=is_box)

    return init


# ---------------------------------------------------------------------------------------------
# Loading: in-memory torch model or local directory
# ---------------------------------------------------------------------------------------------


def _load(src: Any) -> tuple[Any, str, dict[str, np.ndarray]]:
    """Returns (HF config, architecture name, state dict as float32 numpy arrays)."""
    if isinstance(src, str | os.PathLike):
        with local_dir(os.fspath(src)) as local:
            return _load_dir(local)
    if not hasattr(src, "state_dict") or not hasattr(src, "config"):
        raise TypeError(f"from_hf expects a transformers model or a directory, got {type(src)}")
    state = {k: v.detach().float().cpu().numpy() for k, v in src.state_dict().items()}
    return src.config, type(src).__name__, state


def _load_dir(path: str) -> tuple[Any, str, dict[str, np.ndarray]]:
    from safetensors.numpy import load_file
    from transformers import AutoConfig

    cfg_file = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_file):
        raise FileNotFoundError(f"from_hf: no config.json in {path!r}")
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    archs = getattr(config, "architectures", None) or []
    if len(archs) != 1:
        raise ValueError(f"from_hf: {cfg_file} must name exactly one architecture, got {archs}")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.isfile(os.path.join(path, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"from_hf: no model.safetensors (or index) in {path!r}")
    state = {}
    for name in files:
        state.update(load_file(os.path.join(path, name)))
    return config, archs[0], {k: np.asarray(v, np.float32) for k, v in state.items()}


def _fill(model, flat: dict[tuple[str, ...], np.ndarray], arch: str, config) -> dict:
    """Checks ``flat`` against the module's parameter shapes and returns the nested params."""
    if arch in hf_blip.ARCHS:
        inputs = hf_blip.example_inputs(config)
    else:
        inputs = (jnp.zeros((1, 2), jnp.int32),)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs))["params"]
    expected = {
        k: v.value.shape if hasattr(v, "value") else v.shape
        for k, v in traverse_util.flatten_dict(shapes).items()
    }
    missing = sorted("/".join(k) for k in set(expected) - set(flat))
    extra = sorted("/".join(k) for k in set(flat) - set(expected))
    if missing or extra:
        raise ValueError(f"from_hf({arch}): params missing {missing}, unexpected {extra}")
    for k, shape in expected.items():
        if flat[k].shape != tuple(shape):
            raise ValueError(
                f"from_hf({arch}): {'/'.join(k)} has shape {flat[k].shape}, expected {shape}"
            )
    return traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()})
