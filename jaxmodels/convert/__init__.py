"""Shared plumbing of the HF checkpoint converters; each family's converter is its ``hf.py``.

``read`` (an in-memory ``transformers`` model or a local / ``gs://`` directory -> ``Checkpoint``),
``fill`` / ``import_checkpoint`` / ``load_pretrained`` / ``init_from`` (the importer contract and
the checks), ``torch_weights`` (torch ``Linear``/norm/attention entries -> linen params). The
dispatcher over every family, ``from_hf``, is :mod:`jaxmodels.hf` (above the families).
"""

from jaxmodels.convert.fill import (
    Importer,
    Pretrained,
    fill,
    import_checkpoint,
    init_from,
    load_pretrained,
)
from jaxmodels.convert.read import Checkpoint, local_dir, read, read_tokenizer

__all__ = [
    "Checkpoint",
    "Importer",
    "Pretrained",
    "fill",
    "import_checkpoint",
    "init_from",
    "load_pretrained",
    "local_dir",
    "read",
    "read_tokenizer",
]
