"""Family names resolved by convention: ``config.family = "x"`` is ``jaxmodels.models.x``.

A family is the folder ``jaxmodels/models/<name>/`` whose ``task.py`` defines
``build_task(config, mesh) -> Task``; adding one touches no file outside that folder,
``experiments/``, ``tests/`` and ``docs/``. Families are imported lazily, so importing one
imports no other.
"""

from __future__ import annotations

import importlib
import pkgutil

import jaxmodels.models


def families() -> list[str]:
    """The names of the families that ship inside the package."""
    return sorted(m.name for m in pkgutil.iter_modules(jaxmodels.models.__path__) if m.ispkg)


def family_module(name: str):
    """Returns the module implementing family ``name`` (it exposes ``build_task``).

    ``name`` is a folder of ``jaxmodels/models/`` or the dotted path of any importable module
    with a ``build_task(config, mesh)`` function (a family living outside the package).
    """
    if name and "." not in name and name in families():
        return importlib.import_module(f"jaxmodels.models.{name}.task")
    if "." in name:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            raise ValueError(f"config.family={name!r}: cannot import it ({e})") from e
        if hasattr(module, "build_task"):
            return module
    raise ValueError(
        f"config.family={name!r} is not a known family; choose one of: {', '.join(families())} "
        "(or the dotted path of a module with build_task)"
    )
