"""Names that configs use for families, resolved lazily so importing one family imports no other."""

from __future__ import annotations

import importlib

FAMILIES = {
    "lm": "jaxmodels.models.lm",
    "mlp": "jaxmodels.models.mlp",
    "online_action": "jaxmodels.models.online_action_task",
    "diffusion": "jaxmodels.models.diffusion",
    "clip": "jaxmodels.models.two_towers",
    "siglip": "jaxmodels.models.two_towers",
    "roformer": "jaxmodels.models.roformer",
    "lm_extrapolation": "jaxmodels.models.extrapolation",
}


def family_module(name: str):
    """Returns the module implementing family ``name`` (it exposes ``build_task``).

    ``name`` is a key of :data:`FAMILIES`, or the dotted path of any importable module with a
    ``build_task(config, mesh)`` function (a family living outside the package).
    """
    if name in FAMILIES:
        return importlib.import_module(FAMILIES[name])
    if "." in name:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            raise ValueError(f"config.family={name!r}: cannot import it ({e})") from e
        if hasattr(module, "build_task"):
            return module
    known = ", ".join(sorted(FAMILIES))
    raise ValueError(
        f"config.family={name!r} is not a known family; choose one of: {known} "
        "(or the dotted path of a module with build_task)"
    )
