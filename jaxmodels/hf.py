"""Hugging Face checkpoints in any family: ``model, params = from_hf(hf_model_or_dir)``.

The dispatcher above the families: it reads the checkpoint (:func:`jaxmodels.convert.read`) and
runs the importer that one family's ``models/<family>/hf.py`` lists for its architecture
(``ARCHITECTURES``), reaching the families by name through the registry, as the trainer does.
``hf_model_or_dir`` is an in-memory ``transformers`` PyTorch model or a directory with
``config.json`` and safetensors weights, local or ``gs://``; nothing is downloaded. The module
is the family's own and returns what the HF model returns (logits for ``*ForCausalLM`` /
``*ForMaskedLM``, the last hidden state for ``*Model``); see each family's ``hf.py`` for how to
call it.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from jaxmodels import convert, registry
from jaxmodels.convert import Pretrained, read


def family_hf(name: str):
    """The ``jaxmodels.models.<name>.hf`` module, or ``None`` when the family has none."""
    module = f"jaxmodels.models.{name}.hf"
    return importlib.import_module(module) if importlib.util.find_spec(module) else None


def architectures() -> dict[str, tuple[str, Any]]:
    """``{HF architecture: (family, importer)}`` over every family's ``hf.py``."""
    out = {}
    for name in registry.families():
        module = family_hf(name)
        for arch, importer in getattr(module, "ARCHITECTURES", {}).items():
            out[arch] = (name, importer)
    return out


def from_hf(hf_model_or_dir: Any) -> tuple[Any, dict]:
    """Returns ``(linen_module, params)`` equivalent to the HF model (see the module docstring)."""
    return convert.import_checkpoint(read(hf_model_or_dir), _importers())


def load_pretrained(path: str) -> Pretrained:
    """An HF directory of any family: its module and tokenizer, the weights on demand
    (:func:`jaxmodels.convert.load_pretrained`)."""
    return convert.load_pretrained(path, _importers(), key="config.init.hf")


def _importers() -> dict[str, Any]:
    return {arch: importer for arch, (_, importer) in architectures().items()}
