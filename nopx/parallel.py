"""Data parallelism ("pjit"): ``jax.jit`` over a one-axis device mesh.

The batch axis is split over the mesh axis ``"data"``; parameters and optimizer state are
replicated. XLA inserts the gradient all-reduce, so the train step is the same function
on one device or many (on one host or, after ``jax.distributed.initialize()``, several).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from nopx.errors import UserError

DATA_AXIS = "data"


def data_mesh(devices: int, batch_size: int, *, where: str = "config") -> jax.sharding.Mesh | None:
    """A mesh over ``devices`` devices (-1: all), or ``None`` for a single device;
    ``where`` (the config or run) starts the error messages.

    >>> data_mesh(1, 16) is None
    True
    """
    count = jax.device_count() if devices == -1 else devices
    if count > jax.device_count():
        raise UserError(f"{where}: mesh.data = {devices} but only {jax.device_count()} devices are "
                        f"visible ({jax.devices()[0].platform}); lower mesh.data or use -1")
    if count == 1:
        return None
    if batch_size % count:
        raise UserError(f"{where}: train.batch_size {batch_size} is not a multiple of the {count} devices "
                        "of mesh.data; make it one")
    return jax.make_mesh((count,), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def shard_batch(mesh: jax.sharding.Mesh | None, array: np.ndarray) -> jax.Array:
    """Put a host batch on the devices, split along its first axis when it divides evenly."""
    if mesh is None:
        return jax.device_put(array)
    divisible = array.shape[0] % mesh.size == 0
    spec = PartitionSpec(DATA_AXIS) if divisible else PartitionSpec()
    return jax.device_put(array, NamedSharding(mesh, spec))


def replicate(mesh: jax.sharding.Mesh | None, tree: Any) -> Any:
    """Copy a pytree (parameters, optimizer state) to every device of the mesh."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
