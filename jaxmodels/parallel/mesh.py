"""Device meshes from config, and logical-axis-name -> sharding resolution.

The mesh always has the three axes ``("data", "fsdp", "tensor")``; a config sets their sizes
(one of them may be -1, meaning "the devices left over"). Across TPU slices (multislice) or
hosts linked by the data-centre network, ``dcn_data``/``dcn_fsdp``/``dcn_tensor`` split each axis
further: the axis size becomes ``dcn * ici``, slices vary slowest, so with ``dcn_data=N`` the
data-parallel gradient reduction is the only collective that crosses the slower network.
Layers name their parameter and activation axes logically (``"embed"``, ``"mlp"``, ...);
``config.mesh.rules`` maps those names to mesh axes, so switching between data parallelism,
FSDP and tensor parallelism is a config change only.
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


def _slice_index(device) -> int:
    """A device's slice (TPU multislice); elsewhere its process (one process per host)."""
    index = getattr(device, "slice_index", None)
    return device.process_index if index is None else index


def dcn_shape(sizes: Mapping[str, int]) -> tuple[int, ...]:
    """The ``(dcn_data, dcn_fsdp, dcn_tensor)`` sizes (1 when a config does not set them)."""
    shape = tuple(int(sizes.get(f"dcn_{a}", 1)) for a in AXES)
    if any(n < 1 for n in shape):
        raise ValueError(f"config.mesh.dcn_*: sizes must be >= 1, got {shape}")
    return shape


def hybrid_devices(devices, ici: tuple[int, ...], dcn: tuple[int, ...], slice_of) -> np.ndarray:
    """Devices arranged as ``dcn * ici`` per axis: within a slice by its topology, slices
    outermost. ``slice_of(device)`` names the slice a device belongs to."""
    from jax.experimental import mesh_utils

    groups: dict[Any, list] = {}
    for d in devices:
        groups.setdefault(slice_of(d), []).append(d)
    if len(groups) != math.prod(dcn):
        raise ValueError(
            f"config.mesh dcn sizes {dict(zip(AXES, dcn, strict=True))} need {math.prod(dcn)} "
            f"slices; the devices form {len(groups)}"
        )
    per = [
        mesh_utils.create_device_mesh(ici, g, allow_split_physical_axes=True)
        for _, g in sorted(groups.items())
    ]
    grid = np.stack(per).reshape(*dcn, *ici)  # (dcn axes..., ici axes...)
    order = [i for pair in zip(range(3), range(3, 6), strict=True) for i in pair]
    return grid.transpose(order).reshape([d * i for d, i in zip(dcn, ici, strict=True)])


def make_mesh(
    sizes: Mapping[str, int], devices: Sequence[jax.Device] | None = None, slice_of=None
) -> Mesh:
    """Builds the ``(data, fsdp, tensor)`` mesh with explicit ``Auto`` axis types.

    With ``dcn_*`` sizes above 1 the ``data``/``fsdp``/``tensor`` sizes are per slice and
    ``slice_of`` (default: the device's ``slice_index``, else its process) groups the devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    dcn, auto = dcn_shape(sizes), (AxisType.Auto,) * 3
    if math.prod(dcn) > 1:
        if len(devices) % math.prod(dcn):
            raise ValueError(f"config.mesh.dcn_*={dcn}: {len(devices)} devices do not split")
        ici = mesh_shape(sizes, len(devices) // math.prod(dcn))
        grid = hybrid_devices(devices, ici, dcn, slice_of or _slice_index)
        return Mesh(grid, AXES, axis_types=auto)
    shape = mesh_shape(sizes, len(devices))
    if len(devices) == len(jax.devices()):
        return jax.make_mesh(shape, AXES, axis_types=auto)
    return Mesh(np.asarray(devices).reshape(shape), AXES, axis_types=auto)


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


def batch_devices(mesh: Mesh, rules: Rules) -> int:
    """How many ways the ``batch`` logical axis is split on ``mesh`` under ``rules``."""
    target = dict(rules).get("batch")
    axes = target if isinstance(target, tuple) else (target,)
    return math.prod(mesh.shape[a] for a in axes if a is not None)


def check_batch(t, mesh: Mesh, rules: Rules) -> None:
    """Fails, naming the keys, when a (micro-)batch does not split over its devices/processes."""
    n, micro = batch_devices(mesh, rules), t.batch_size // t.grad_accum
    if micro % n:
        raise ValueError(
            f"config.train.batch_size={t.batch_size} (per micro-batch {micro} with "
            f"config.train.grad_accum={t.grad_accum}) does not divide over the {n} devices that "
            f"shard the batch (mesh {dict(mesh.shape)}); use a multiple of {n * t.grad_accum} "
            "or change config.mesh"
        )
    if t.batch_size % jax.process_count():
        raise ValueError(
            f"config.train.batch_size={t.batch_size} does not divide over "
            f"{jax.process_count()} processes"
        )
