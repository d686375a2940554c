"""From a read checkpoint to a module's parameters: the importer contract, checks and boxing.

A family's ``models/<family>/hf.py`` lists ``ARCHITECTURES: dict[str, Importer]``, each
``Importer(hf_config, state) -> (module, params)`` (params nested and unboxed, checked with
:func:`fill`). :func:`import_checkpoint` runs the importer of a checkpoint's architecture,
refusing any other naming the supported ones; :func:`load_pretrained` is that plus the
directory's tokenizer (a family's ``init.hf``); :func:`init_from` boxes the params as a
``Task.init``. :func:`importer` builds an ``Importer`` from a module builder and a converter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxmodels.convert.read import Checkpoint, read

Importer = Callable[[Any, dict[str, np.ndarray]], tuple[nn.Module, dict]]


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """An imported checkpoint: the family's module, its params and the directory's tokenizer."""

    model: Any
    params: dict
    tokenizer: Any | None  # HFTokenizer when the directory has a tokenizer.json


def import_checkpoint(
    ckpt: Checkpoint, architectures: Mapping[str, Importer], *, key: str = "from_hf"
) -> tuple[nn.Module, dict]:
    """``architectures[ckpt.architecture](config, state)``; another architecture is refused."""
    if ckpt.architecture not in architectures:
        raise ValueError(
            f"{key}: architecture {ckpt.architecture!r} is not supported; supported: "
            f"{', '.join(sorted(architectures))}"
        )
    return architectures[ckpt.architecture](ckpt.config, ckpt.state)


def load_pretrained(
    path: Any, architectures: Mapping[str, Importer], *, key: str = "config.init.hf"
) -> Pretrained:
    """Reads ``path`` and imports it with one of ``architectures``, tokenizer included."""
    ckpt = read(path, key=key)
    model, params = import_checkpoint(ckpt, architectures, key=key)
    return Pretrained(model, params, ckpt.tokenizer)


def token_inputs(hf_config) -> tuple:
    """The example input of a token model's ``init``: one row of two token ids."""
    del hf_config
    return (jnp.zeros((1, 2), jnp.int32),)


def importer(
    arch: str,
    build: Callable[[Any], nn.Module],
    convert: Callable[[dict[str, np.ndarray], Any], Mapping],
    example_inputs: Callable[[Any], tuple] = token_inputs,
) -> Importer:
    """The :data:`Importer` of ``arch``: ``build(hf_config)`` the module, ``convert(state,
    hf_config)`` the weights, and :func:`fill` checks them against the module's own shapes."""

    def run(hf_config, state):
        model = build(hf_config)
        params = convert(state, hf_config)
        return model, fill(model, params, *example_inputs(hf_config), what=f"from_hf({arch})")

    return run


def fill(model: nn.Module, params: Mapping, *example_inputs, what: str = "from_hf") -> dict:
    """Checks converted ``params`` against ``model``'s parameter shapes; returns them nested.

    ``params`` is nested or flat (``{path tuple: array}``); ``example_inputs`` are what
    ``model.init`` takes; ``what`` (e.g. the architecture) prefixes every error, which names each
    missing, unexpected or misshapen parameter.
    """
    flat = dict(params) if all(isinstance(k, tuple) for k in params) else None
    flat = flat or traverse_util.flatten_dict(dict(params))
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *example_inputs))["params"]
    expected = {
        k: v.value.shape if hasattr(v, "value") else v.shape
        for k, v in traverse_util.flatten_dict(shapes).items()
    }
    missing = sorted("/".join(k) for k in set(expected) - set(flat))
    extra = sorted("/".join(k) for k in set(flat) - set(expected))
    if missing or extra:
        raise ValueError(f"{what}: params missing {missing}, unexpected {extra}")
    for k, shape in expected.items():
        if np.shape(flat[k]) != tuple(shape):
            raise ValueError(
                f"{what}: {'/'.join(k)} has shape {np.shape(flat[k])}, expected {tuple(shape)}"
            )
    return traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()})


def init_from(model, params: dict, *example_inputs):
    """A ``Task.init`` returning ``params`` boxed with ``model``'s logical axis names.

    The module's own initialisation supplies only the boxes (its random values are dropped).
    """
    is_box = lambda x: isinstance(x, nn.Partitioned)  # noqa: E731

    def init(rng):
        boxed = model.init(rng, *example_inputs)["params"]

        def fill_box(box, value):
            if is_box(box):
                return box.replace_boxed(jnp.asarray(value, box.value.dtype))
            return jnp.asarray(value, box.dtype)

        return jax.tree.map(fill_box, boxed, params, is_leaf=is_box)

    return init
