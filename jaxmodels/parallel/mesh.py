"""Device meshes from config, and logical-axis-name -> sharding resolution.

The mesh always has the three axes ``("data", "fsdp", "tensor")``; a config sets their sizes
(one of them may be -1, meaning "the devices left over"). Layers name their parameter and
activation axes logically (``"embed"``, ``"mlp"``, ...); ``config.mesh.rules`` maps those names
to mesh axes, so switching between data parallelism, FSDP and tensor parallelism is a config
change only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

AXES = ("data", "fsdp", "tensor")
Rules = Sequence[tuple[str, Any]]


def mesh_shape(sizes: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
    """Resolves the (data, fsdp, tensor) sizes, filling a single -1 with the remaining devices."""
    shape = [int(sizes[a]) for a in AXES]
    if shape.count(-1) > 1:
        raise ValueError(f"config.mesh: at most one of {AXES} may be -1, got {dict(sizes)}")
    for axis, n in zip(AXES, shape, strict=True):
        if n == 0 or n < -1:
            raise ValueError(f"config.mesh.{axis}={n}: sizes must be positive or -1")
    known = math.prod(n for n in shape if n != -1)
    if -1 in shape:
        if num_devices % known:
            raise ValueError(
                f"config.mesh: {num_devices} devices cannot be split with sizes {dict(sizes)}"
            )
        shape[shape.index(-1)] = num_devices // known
    if math.prod(shape) != num_devices:
        raise ValueError(
            f"config.mesh sizes {dict(zip(AXES, shape, strict=True))} use {math.prod(shape)} "
            f"devices but {num_devices} are available"
        )
    return tuple(shape)


def make_mesh(sizes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds the ``(data, fsdp, tensor)`` mesh with explicit ``Auto`` axis types."""
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(sizes, len(devices))
    if len(devices) == len(jax.devices()):
        return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * 3)
    return Mesh(np.asarray(devices).reshape(shape), AXES, axis_types=(AxisType.Auto,) * 3)


def rules_from_config(rules) -> tuple[tuple[str, Any], ...]:
    """Normalises config rules (lists from JSON/CLI become tuples) and checks mesh axis names."""
    out = []
    for name, target in rules:
        target = tuple(target) if isinstance(target, list | tuple) else target
        for axis in target if isinstance(target, tuple) else (target,):
            if axis is not None and axis not in AXES:
                raise ValueError(
                    f"config.mesh.rules maps {name!r} to unknown mesh axis {axis!r}; "
                    f"mesh axes are {AXES}"
                )
        out.append((name, target))
    return tuple(out)


def logical_sharding(logical_specs, mesh: Mesh, rules: Rules):
    """Maps a pytree of logical ``PartitionSpec``s to ``NamedSharding``s on ``mesh``."""
    return nn.logical_to_mesh_sharding(logical_specs, mesh, rules)


def batch_shardings(batch, mesh: Mesh, rules: Rules, batch_axes: Mapping[str, tuple]):
    """Returns a ``NamedSharding`` per batch field; unnamed fields shard dim 0 over ``batch``."""

    def one(key, x):
        axes = batch_axes.get(key, ("batch",) + (None,) * (np.ndim(x) - 1))
        spec = nn.logical_to_mesh_axes(axes, rules)
        return NamedSharding(mesh, spec)

    return {k: one(k, v) for k, v in batch.items()}


def put_batch(local_batch, shardings):
    """Assembles host-local numpy batches (this process's rows) into global sharded arrays."""
    return {
        k: jax.make_array_from_process_local_data(shardings[k], np.asarray(v))
        for k, v in local_batch.items()
    }


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())
