"""Another run's parameters, read only: ``config.init.workdir`` and a family's teacher.

:func:`read_params` gives a family (reflow's teacher, a student's teacher, a tower taken from
another run) the parameters saved in another run's workdir; :func:`start_params` is how the
trainer starts a fresh run (step 0) from them. Reading never takes that run's lock and
creates, moves or deletes nothing under its folder: orbax reads one step folder directly (no
``CheckpointManager``, which creates its folder and tidies it when opened for writing).

The newest checkpoint is read, or the one named (``DIR/checkpoints/STEP``). When it cannot
be read, or what it holds fails :func:`~jaxmodels.train.integrity.verify` (a NaN/Inf, an
array unlike its saved checksum), the error names it and the older ones to name instead: a
silent fallback would hand over an older run than the one asked for. The shapes are compared
before any array is read, and every differing parameter is named.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import numpy as np

from jaxmodels.config import WORKDIR_PARAMS, parse_workdir_map, within
from jaxmodels.train import integrity, paths

SHOWN = 12  # differing parameters listed in a mismatch error


class UnreadableCheckpointError(ValueError):
    """Another run's checkpoint could not be read; nothing under its folder was changed."""


def _is_box(x) -> bool:
    return isinstance(x, nn.Partitioned)


def flatten(tree) -> dict[str, Any]:
    """``{"a": {"b": x}}`` -> ``{"a/b": x}`` (``nn.Partitioned`` boxes are kept as leaves)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_box)
    return {integrity.leaf_name(p): v for p, v in flat}


def unflatten(flat: dict[str, Any]) -> dict:
    """The inverse of :func:`flatten` for trees of nested dicts."""
    out: dict = {}
    for name, value in flat.items():
        *parents, leaf = name.split("/")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _steps(checkpoints) -> list[int]:
    import orbax.checkpoint as ocp

    return sorted(ocp.path.step.checkpoint_steps(checkpoints)) if checkpoints.is_dir() else []


def find_checkpoint(path: str, *, key: str):
    """``(step folder, older step folders)``: ``path`` itself when it is one checkpoint
    (``DIR/checkpoints/STEP``), else the newest finished checkpoint of the workdir ``path``."""
    p = paths.path(path)
    if not p.exists():
        raise FileNotFoundError(f"{key}={path!r} does not exist (nothing was created there)")
    if not p.is_dir():
        raise NotADirectoryError(f"{key}={path!r} is a file, not a run's workdir")
    if (p / "state").is_dir() and p.name.isdigit():
        return p, [p.parent / str(s) for s in _steps(p.parent) if s < int(p.name)]
    steps = _steps(p / "checkpoints")
    if not steps:
        raise FileNotFoundError(
            f"{key}={path!r} has no finished checkpoint under {p / 'checkpoints'}: train that "
            "run first (or name its workdir, or one checkpoint: DIR/checkpoints/STEP)"
        )
    return p / "checkpoints" / str(steps[-1]), [p / "checkpoints" / str(s) for s in steps[:-1]]


def _choose(saved_state, use: str, key: str, path: str, step_dir) -> str:
    """The saved tree to read: ``ema_params`` or ``params`` (``config.init.workdir_params``)."""
    if use not in WORKDIR_PARAMS:
        raise ValueError(
            f"{key}={path!r}: cannot read the {use!r} parameters; choose one of {WORKDIR_PARAMS}"
        )
    has_ema = bool(saved_state.get("ema_params"))
    if use == "ema" and not has_ema:
        raise ValueError(
            f"{key}={path!r}: {step_dir} holds no EMA parameters (that run's "
            "config.train.ema_halflife_examples was 0); read its 'params' (or 'auto')"
        )
    return "ema_params" if (use == "ema" or (use == "auto" and has_ema)) else "params"


def check_fit(saved: dict, wanted: dict, roots, *, where: str, hint: str = "") -> None:
    """Raises ``ValueError`` naming every parameter under ``roots`` whose presence or shape
    differs between the saved tree and ``wanted`` (both flat, ``{path: array or metadata}``)."""
    names = {k for k in saved if any(within(k, r) for r in roots)} | set(wanted)
    lines = []
    for k in sorted(names):
        a, b = saved.get(k), wanted.get(k)
        if a is None or b is None:
            lines.append(f"{k}: only in {'this run' if a is None else 'that run'}")
        elif tuple(a.shape) != tuple(b.shape):
            lines.append(f"{k}: that run {tuple(a.shape)}, this run {tuple(b.shape)}")
    if lines:
        more = f"\n  ... and {len(lines) - SHOWN} more" if len(lines) > SHOWN else ""
        raise ValueError(
            f"the parameters of {where} do not fit this config ({len(lines)} differ):\n  "
            + "\n  ".join(lines[:SHOWN])
            + more
            + f"\nNothing was read. {hint}"
        )


def _restore_args(ocp, leaf):
    sharding = getattr(leaf, "sharding", None)
    if sharding is None:  # no sharding asked for: host numpy arrays
        return ocp.RestoreArgs(restore_type=np.ndarray, dtype=leaf.dtype)
    return ocp.ArrayRestoreArgs(sharding=sharding, global_shape=leaf.shape, dtype=leaf.dtype)


def _unreadable(key: str, path: str, step_dir, older, error: Exception):
    if older:
        instead = (
            f"To start from an older checkpoint of that run, name it: --{key}={older[-1]} "
            f"(it has {', '.join(d.name for d in older)})."
        )
    else:
        instead = "That run has no older checkpoint to name instead."
    return UnreadableCheckpointError(
        f"{key}={path!r}: checkpoint {step_dir} could not be read ({type(error).__name__}: "
        f"{error}). Nothing under {path} was moved or changed. {instead} If the storage was "
        "unreachable, rerun."
    )


def _checksums(ocp, step_dir) -> dict | None:
    """The checksums saved beside the state (none in checkpoints saved before them)."""
    folder = step_dir / "checksums"
    return ocp.JsonCheckpointHandler().restore(folder) if folder.exists() else None


def read_flat(path: str, wanted: dict, *, use: str = "auto", key: str, roots=("",), hint=""):
    """Reads the parameters ``wanted`` (``{path: jax.ShapeDtypeStruct}``) from the run in
    ``path``: ``(flat arrays, "step folder (tree)")``.

    Each result has the wanted shape, dtype and sharding (no sharding: a host numpy array).
    Under each of ``roots`` (``/``-joined prefixes of that run's tree, ``""`` for all of it)
    the saved parameters and ``wanted`` must agree exactly. ``use`` picks the saved tree:
    ``auto`` (the EMA when that run kept one), ``ema`` or ``params``. ``key`` names the
    config key in errors; ``hint`` is added to a mismatch error.
    """
    import orbax.checkpoint as ocp

    step_dir, older = find_checkpoint(path, key=key)
    handler = ocp.PyTreeCheckpointHandler()
    try:
        saved_state = handler.metadata(step_dir / "state").tree
    except PermissionError:
        raise
    except Exception as e:
        raise _unreadable(key, path, step_dir, older, e) from e
    tree = _choose(saved_state, use, key, path, step_dir)
    where = f"{step_dir} ({tree})"
    hint = f"That run's config is {step_dir.parent.parent / 'config.json'}. {hint}".strip()
    check_fit(
        flatten(saved_state[tree]), wanted, roots, where=f"{key}={path!r}: {where}", hint=hint
    )
    item = {tree: unflatten(wanted)}
    restore_args = {tree: unflatten({k: _restore_args(ocp, v) for k, v in wanted.items()})}
    try:
        restored = ocp.Checkpointer(handler).restore(
            step_dir / "state",
            args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True),
        )
        integrity.verify(restored, _checksums(ocp, step_dir))  # finite, and as it was saved
    except PermissionError:
        raise
    except Exception as e:
        raise _unreadable(key, path, step_dir, older, e) from e
    if jax.process_index() == 0:
        print(f"{key}: {len(wanted)} parameter arrays from {where}", flush=True)
    return flatten(restored[tree]), where


def read_params(path: str, target, *, use: str = "auto", key: str):
    """The whole parameter tree of the run in ``path`` (its workdir, or one checkpoint
    ``DIR/checkpoints/STEP``), read only, with ``target``'s structure, shapes, dtypes and
    shardings (``target``: a tree of ``jax.ShapeDtypeStruct``, e.g. ``jax.eval_shape`` of a
    family's init, unboxed). See :func:`read_flat`."""
    flat, _ = read_flat(path, flatten(target), use=use, key=key)
    return unflatten(flat)


def start_params(config, abstract_params) -> dict | None:
    """``config.init.workdir``'s parameters for a run starting at step 0, as ``{path: array}``
    in ``abstract_params``' shardings and dtypes: all of them, or with ``config.init.
    workdir_map`` only the mapped sub-trees (the rest keeps its fresh initialisation).
    None when ``config.init.workdir`` is empty."""
    init = config.get("init") or {}
    path = init.get("workdir", "")
    if not path:
        return None
    target = flatten(abstract_params)
    pairs = parse_workdir_map(init.get("workdir_map", "")) or [("", "")]
    wanted, these = {}, {}  # that run's path -> its abstract array, and this run's paths
    for here, there in pairs:
        names = [k for k in target if within(k, here)]
        if not names:
            tops = sorted({k.split("/")[0] for k in target})
            raise ValueError(
                f"config.init.workdir_map: {here!r} names no parameter of this run; its "
                f"top-level names are {tops}"
            )
        for k in names:
            source = "/".join(filter(None, (there, k[len(here) :].lstrip("/"))))
            if source in wanted and wanted[source].shape != target[k].shape:
                raise ValueError(
                    f"config.init.workdir_map: that run's {source} cannot fill both "
                    f"{these[source][0]} {wanted[source].shape} and {k} {target[k].shape}"
                )
            wanted[source] = target[k]
            these.setdefault(source, []).append(k)
    loaded, _ = read_flat(
        path,
        wanted,
        use=init.get("workdir_params", "auto"),
        key="config.init.workdir",
        roots=[there for _, there in pairs],
        hint="Use its model config, or take only the sub-trees that fit with "
        "config.init.workdir_map.",
    )
    return {k: v for source, v in loaded.items() for k in these[source]}


def place(params, abstract_params, *, key: str) -> dict:
    """A family's start parameters (``Task.start_params``: host arrays, ``init``'s tree) as
    ``{path: array}`` in ``abstract_params``' shardings and dtypes, for :func:`overlay`.

    Each process builds only its own shards (``make_array_from_callback``); a tree unlike
    ``init``'s is refused naming the differing paths.
    """
    given = {k: np.asarray(v) for k, v in flatten(params).items()}
    target = flatten(abstract_params)
    check_fit(given, target, ("",), where=key)
    return {
        k: jax.make_array_from_callback(
            a.shape, a.sharding, lambda idx, v=given[k], a=a: np.asarray(v[idx], a.dtype)
        )
        for k, a in target.items()
    }


def overlay(params, start: dict | None):
    """``params`` (a family's init, maybe boxed) with the leaves ``start`` names replaced by
    its arrays, cast to each leaf's dtype (boxes and their logical names are kept)."""
    if not start:
        return params

    def put(path, leaf):
        name = integrity.leaf_name(path)
        if name not in start:
            return leaf
        if _is_box(leaf):
            return leaf.replace_boxed(start[name].astype(leaf.value.dtype))
        return start[name].astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(put, params, is_leaf=_is_box)
