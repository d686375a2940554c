"""Shared plumbing of the HF checkpoint converters; each family's converter is its ``hf.py``.

``read`` (an in-memory ``transformers`` model or a local / ``gs://`` directory -> ``Checkpoint``),
``fill`` / ``importer`` / ``import_checkpoint`` / ``load_pretrained`` (the importer contract and
the checks), ``torch_weights`` (torch ``Linear``/norm/attention entries -> linen params). The
dispatcher over every family, ``from_hf``, is :mod:`jaxmodels.hf` (above the families).
"""

from jaxmodels.convert.fill import (
    Importer,
    Pretrained,
    fill,
    import_checkpoint,
    importer,
    importer_for,
    load_pretrained,
)
from jaxmodels.convert.read import Checkpoint, MissingHFError, local_dir, read, read_tokenizer

__all__ = [
    "Checkpoint",
    "Importer",
    "MissingHFError",
    "Pretrained",
    "fill",
    "import_checkpoint",
    "importer",
    "importer_for",
    "load_pretrained",
    "local_dir",
    "read",
    "read_tokenizer",
]
