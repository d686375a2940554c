"""Names that configs use for families, resolved lazily so importing one family imports no other."""

from __future__ import annotations

import importlib

FAMILIES = {
    "lm": "jaxmodels.models.lm",
}


def family_module(name: str):
    """Returns the module implementing family ``name`` (it exposes ``build_task``)."""
    if name not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise ValueError(f"config.family={name!r} is not a known family; choose one of: {known}")
    return importlib.import_module(FAMILIES[name])
