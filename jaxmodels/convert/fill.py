"""From a read checkpoint to a module's parameters: the importer contract and its checks.

A family's ``models/<family>/hf.py`` lists ``ARCHITECTURES: dict[str, Importer]``, each
``Importer(hf_config, state) -> (module, params)`` (params nested and unboxed, checked with
:func:`fill`); :func:`importer` makes one from a module builder and a weight converter
(:class:`Converter`, whose ``build`` alone gives the module without reading any weight).
:func:`import_checkpoint` runs the importer of a checkpoint's architecture, refusing any other
naming the supported ones; :func:`load_pretrained` gives a family's ``init.hf`` the module and
the directory's tokenizer, the weights on demand, and :func:`complete_config` completes the run's
config with what the checkpoint fixes, refusing a config that contradicts it. Both give a module
that normalises images (``image_mean`` / ``image_std`` fields) the statistics of the directory's
``preprocessor_config.json`` when it has one (:func:`with_image_processing`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxmodels.convert.read import Checkpoint, ImageProcessing, read

Importer = Callable[[Any, dict[str, np.ndarray]], tuple[nn.Module, dict]]


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """An HF directory read for a family (:func:`load_pretrained`): the weights on demand."""

    model: Any  # the family's module, built from config.json alone
    tokenizer: Any | None  # the directory's tokenizer (data.tokenizers.find_tokenizer), or None
    read_params: Callable[[], dict]  # reads and converts the weights (nested, unboxed)
    hf_config: Any = None  # the directory's transformers config (what the module was built from)


def importer_for(
    architecture: str, architectures: Mapping[str, Importer], *, key: str = "from_hf"
) -> Importer:
    """``architectures[architecture]``; another architecture is refused naming the supported."""
    if architecture not in architectures:
        raise ValueError(
            f"{key}: architecture {architecture!r} is not supported; supported: "
            f"{', '.join(sorted(architectures))}"
        )
    return architectures[architecture]


def import_checkpoint(
    ckpt: Checkpoint, architectures: Mapping[str, Importer], *, key: str = "from_hf"
) -> tuple[nn.Module, dict]:
    """``architectures[ckpt.architecture](config, state)``, the module normalising images as the
    checkpoint's ``preprocessor_config.json`` says (:func:`with_image_processing`); another
    architecture is refused."""
    model, params = importer_for(ckpt.architecture, architectures, key=key)(ckpt.config, ckpt.state)
    return with_image_processing(model, ckpt.config, ckpt.images, key=key), params


def with_image_processing(
    model: nn.Module, hf_config, images: ImageProcessing | None, *, key: str = "from_hf"
) -> nn.Module:
    """``model`` with the ``image_mean`` / ``image_std`` of a directory's
    ``preprocessor_config.json`` (:func:`jaxmodels.convert.read.image_processing`) in place of
    its architecture's; unchanged without the file, or for a module with no such fields. An
    image size the file fixes (``crop_size``, else ``size``) must be config.json's
    ``vision_config.image_size``: the towers' positions are of that grid."""
    fields = {f.name for f in dataclasses.fields(model)}
    if images is None or not {"image_mean", "image_std"} <= fields:
        return model
    vision = getattr(hf_config, "vision_config", None)
    side = getattr(vision, "image_size", None)
    if images.size and side and images.size != (side, side):
        h, w = images.size
        raise ValueError(
            f"{key}: {images.file} gives the model {h}x{w} images ({images.size_key}), but "
            f"config.json's vision_config.image_size is {side}: the two files disagree"
        )
    stats = {"image_mean": images.mean, "image_std": images.std}
    return model.clone(**{k: v for k, v in stats.items() if v is not None})


def load_pretrained(
    path: str, architectures: Mapping[str, Converter], *, key: str = "config.init.hf"
) -> Pretrained:
    """``path`` (an HF directory, local or gs://) as one of ``architectures``: the module and
    tokenizer from its config and tokenizer files now, the weights when ``read_params()`` is
    called (a run starting from them: ``Task.start_params``; never a run restoring its own
    checkpoint). Another architecture is refused naming the supported ones. A module normalising
    images takes the statistics of the directory's ``preprocessor_config.json``
    (:func:`with_image_processing`)."""
    head = read(path, key=key, weights=False)
    converter = importer_for(head.architecture, architectures, key=key)

    def read_params() -> dict:
        ckpt = read(path, key=key)
        return converter(ckpt.config, ckpt.state)[1]

    model = with_image_processing(converter.build(head.config), head.config, head.images, key=key)
    return Pretrained(model, head.tokenizer, read_params, head.config)


def complete_config(
    config, fixed: Mapping[str, Any], *, hint: str, fits=None, misfits: Sequence[str] = ()
):
    """A copy of ``config`` holding the checkpoint's ``fixed`` values (``{dotted config key:
    value}``, e.g. ``"data.image_size"``) where it leaves them out (absent, None, 0 or ""); a
    value that contradicts the checkpoint stops the run naming each key, with the ``misfits`` the
    family found itself. ``fits(key, mine, theirs)`` accepts a differing value (a shorter text);
    ``hint`` names the config file that leaves these keys out."""
    out, found = copy.deepcopy(config), []
    with out.unlocked():
        for key, theirs in fixed.items():
            *path, leaf = key.split(".")
            node = functools.reduce(lambda d, part: d[part], path, out)
            mine = node.get(leaf)
            if mine is None or (mine in (0, "") and not isinstance(mine, bool)):
                node[leaf] = theirs
            elif mine != theirs and not (fits and fits(key, mine, theirs)):
                found.append(f"config.{key}={mine!r} (the checkpoint's: {theirs!r})")
    if misfits := [*found, *misfits]:
        raise ValueError(
            f"config.init.hf={config.init.hf!r} fixes the model; this config contradicts it: "
            + "; ".join(misfits)
            + f". Leave these keys out ({hint}) or give the checkpoint's"
        )
    return out


def encoder_kwargs(hf_config, activation: str | None = None) -> dict:
    """The shared towers' (ViT, text transformers) sizes from an HF encoder config (CLIP, SigLIP,
    BLIP vision or text): width, depth, MLP width, heads, norm epsilon, ``activation`` (default:
    ``hidden_act`` as it is), XLA attention."""
    c = hf_config
    return dict(
        width=c.hidden_size,
        depth=c.num_hidden_layers,
        mlp_dim=c.intermediate_size,
        num_heads=c.num_attention_heads,
        activation=activation or c.hidden_act,
        norm_eps=c.layer_norm_eps,
        attention_impl="xla",
    )


def token_inputs(hf_config) -> tuple:
    """The example input of a token model's ``init``: one row of two token ids."""
    del hf_config
    return (jnp.zeros((1, 2), jnp.int32),)


@dataclasses.dataclass(frozen=True)
class Converter:
    """An :data:`Importer` in two halves: ``build(hf_config)`` the module (no weights needed),
    ``convert(state, hf_config)`` the weights; calling it checks them with :func:`fill`."""

    arch: str
    build: Callable[[Any], nn.Module]
    convert: Callable[[dict[str, np.ndarray], Any], Mapping]
    example_inputs: Callable[[Any], tuple] = token_inputs

    def __call__(self, hf_config, state) -> tuple[nn.Module, dict]:
        model = self.build(hf_config)
        params = self.convert(state, hf_config)
        what = f"from_hf({self.arch})"
        return model, fill(model, params, *self.example_inputs(hf_config), what=what)


def importer(arch: str, build, convert, example_inputs=token_inputs) -> Converter:
    """The :data:`Importer` of ``arch`` (see :class:`Converter`)."""
    return Converter(arch, build, convert, example_inputs)


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
