"""What may change when a run is resumed: the config against the run's ``config.json`` and
the parameter shapes against the newest checkpoint's metadata.

Both checks run before any checkpoint is read, moved or written, so a mistyped override
(``--config.model.width=48`` on an existing workdir) stops with the differing keys instead of
looking like a corrupt checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jax

from jaxmodels.config import base_config, current_names
from jaxmodels.train.integrity import leaf_name

# Keys a resumed run may change: how long it runs and how it logs, evaluates, checkpoints and
# samples, the decay end point, the debug checks (turned on to find a diverging step), and the
# mesh (restoring onto other devices is supported).
RESUMABLE = (
    "train.steps",
    "train.log_every",
    "train.eval_every",
    "train.eval_batches",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.sample_at_end",
    "train.min_lr_ratio",
    "train.debug_checks",
    "mesh.",
    "sample.",
    "evals",  # which evaluators run (jaxmodels eval --config.evals=a,b on a saved run)
    "zero_shot.",  # the labelled folder of the zero_shot evaluator (--config.zero_shot.dir)
    "model.unroll",  # flows: how the scanned steps compile, not what they compute
)
OVERRIDE_FLAG = "--allow_config_change"
ABSENT = "<absent>"  # a key one of the two configs lacks


class ConfigMismatchError(ValueError):
    """The config or the parameter shapes differ from the run already in the workdir."""


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"steps": 3}}`` -> ``{"train.steps": 3}`` (lists and scalars are leaves)."""
    if not isinstance(tree, Mapping) or not tree:
        return {prefix: tree}
    out = {}
    for k, v in tree.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _tree(config) -> Mapping:
    return json.loads(config.to_json_best_effort()) if hasattr(config, "to_json") else config


def config_changes(saved: Mapping, config) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved, new)}`` for every leaf that differs (``<absent>`` marks a missing key).

    Both sides are read in today's vocabulary first (``config.current_names``): a run saved as
    ``model.d_model=64`` equals ``model.width=64``.
    """
    old, new = (flatten(current_names(_tree(c))) for c in (saved, config))
    return {
        k: (old.get(k, ABSENT), new.get(k, ABSENT))
        for k in sorted(old.keys() | new.keys())
        if old.get(k, ABSENT) != new.get(k, ABSENT)
    }


def _resumable(key: str) -> bool:
    return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)


def _added_at_default(key: str, old, new) -> bool:
    """A shared key added since the run was saved, at its default (``config.base_config``):
    the run already had that behaviour (e.g. ``init.workdir=''`` on a run saved before it)."""
    return old == ABSENT and flatten(base_config().to_dict()).get(key, ABSENT) == new


def check_config(saved: Mapping, config, *, allow: bool, where: str) -> list[str]:
    """Raises ``ConfigMismatchError`` naming refused changes; returns lines describing the rest.

    ``allow`` (the ``--allow_config_change`` flag) accepts every change.
    """
    changes = config_changes(saved, config)
    lines = [f"config.{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items()]
    refused = [
        line
        for (k, (a, b)), line in zip(changes.items(), lines, strict=True)
        if not (_resumable(k) or _added_at_default(k, a, b))
    ]
    if refused and not allow:
        raise ConfigMismatchError(
            f"the config differs from the run saved in {where} in keys that cannot change on "
            "resume:\n  " + "\n  ".join(refused) + "\nNo checkpoint was touched. Use a new "
            f"--workdir, or pass {OVERRIDE_FLAG} if the change is intended (allowed without "
            f"it: {', '.join(RESUMABLE)})."
        )
    return lines


def leaf_shapes(tree) -> dict[str, tuple[int, ...]]:
    """``{"params/Dense_0/kernel": (64, 32), ...}`` for a state pytree or orbax metadata tree."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {leaf_name(p): tuple(getattr(v, "shape", ())) for p, v in flat}


def check_shapes(saved_tree, abstract_state, *, where: str) -> None:
    """Raises ``ConfigMismatchError`` at the first parameter whose shape differs."""
    saved, want = leaf_shapes(saved_tree), leaf_shapes(abstract_state)
    for key in list(want) + sorted(saved.keys() - want.keys()):
        a, b = saved.get(key, "absent"), want.get(key, "absent")
        if a != b:
            raise ConfigMismatchError(
                f"checkpoint {where} does not fit this config: the first differing parameter is "
                f"{key} (checkpoint {a}, config {b}). No checkpoint was touched; use the run's "
                "config (config.json in the workdir) or a new --workdir."
            )
