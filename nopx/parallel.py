"""Device meshes and shardings ("pjit"): ``jax.jit`` over a ``(data, model)`` device mesh.

The batch is split over the mesh axis ``data``. Parameters and optimizer state are
replicated, or split over ``model`` by the model's own sharding rule (a class attribute
``sharding_rules`` next to the model: see :func:`param_shardings`). The train step is the
same function on one device or many; XLA inserts the gradient all-reduce and the
collectives of the model-sharded contractions.

Across processes (after :func:`jax.distributed.initialize`, :mod:`nopx.distributed`) every
array is global: a process holds whole copies of what is replicated, and supplies only the
rows of a batch that its own devices hold (:func:`local_rows`, :func:`global_batch`).

Both mesh axes are ``AxisType.Auto``: the models are written for one device, so XLA's
sharding propagation, not sharding-in-types, decides the layout between the pinned
inputs and outputs of each step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nopx.errors import UserError

DATA_AXIS = "data"
MODEL_AXIS = "model"

# ``(regular expression on a parameter path such as "blocks/0/conv/weight_real", axis)``: the
# first rule whose pattern is found in a path shards that parameter along ``axis``. A third
# entry ``blocks`` keeps indivisible blocks of that axis whole (the heads of a ``(C, heads·d)``
# attention kernel): the path of the parameter whose length is the number of blocks, written
# as the replacement of the rule's match (``re.sub``), e.g. ``"attention/logit_scale"``.
ShardingRules = Sequence[tuple[str, int] | tuple[str, int, str]]


def make_mesh(data: int, model: int = 1, *, where: str = "config") -> Mesh:
    """A ``(data, model)`` mesh of ``data * model`` devices; one size may be -1 (the rest).

    ``where`` (the config or run) starts the error messages. A multi-process run must use
    every device.

    >>> dict(make_mesh(1, -1).shape) == {"data": 1, "model": jax.device_count()}
    True
    """
    total = jax.device_count()
    sizes = {"mesh.data": data, "mesh.model": model}
    platform = jax.devices()[0].platform
    if data == -1 and model == -1:
        raise UserError(f"{where}: mesh.data and mesh.model are both -1; give one of them a size")
    for key, size in sizes.items():
        if size != -1 and (size > total or total % size):
            raise UserError(f"{where}: {key} = {size} does not divide the {total} visible "
                            f"{platform} devices; use a divisor of {total}, or -1 for the rest")
    known = math.prod(size for size in sizes.values() if size != -1)
    if total % known:
        raise UserError(f"{where}: mesh.data x mesh.model = {known} does not divide the {total} "
                        f"visible {platform} devices; make the product a divisor of {total}")
    data, model = (total // known if size == -1 else size for size in (data, model))
    if jax.process_count() > 1 and data * model != total:
        raise UserError(f"{where}: the mesh uses {data * model} of the {total} devices of this "
                        f"{jax.process_count()}-process run; every process must take part: set "
                        "mesh.data: -1")
    return jax.make_mesh((data, model), (DATA_AXIS, MODEL_AXIS),
                         axis_types=(jax.sharding.AxisType.Auto,) * 2,
                         devices=jax.devices()[:data * model])


def check_batch(mesh: Mesh, batch_size: int, *, where: str = "config") -> None:
    """Refuse a batch the ``data`` axis (or the processes) cannot split evenly."""
    data = mesh.shape[DATA_AXIS]
    if batch_size % data:
        raise UserError(f"{where}: train.batch_size {batch_size} is not a multiple of mesh.data "
                        f"= {data}; make it one (each data shard takes batch_size / {data} "
                        "samples)")


def path_name(path: tuple[Any, ...]) -> str:
    """``"blocks/0/conv/weight_real"`` for a pytree key path into an ``nnx.State``."""
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
    return "/".join(parts)


def param_shardings(mesh: Mesh, params: Any, rules: ShardingRules = ()) -> Any:
    """A :class:`NamedSharding` per parameter: split on ``model`` by the first matching
    rule, replicated otherwise.

    A parameter whose ruled axis (or number of blocks) does not divide by the ``model`` axis
    size (a 1-channel projection, a TT core of rank 1, 3 attention heads on 2 devices) stays
    replicated: sharding it would need padding or would cut a block, and such tensors are
    small. With ``model`` of size 1 everything is replicated.
    """
    model = mesh.shape[MODEL_AXIS]
    compiled = [(re.compile(pattern), axis, *blocks) for pattern, axis, *blocks in rules]
    sizes = {path_name(path): math.prod(leaf.shape)
             for path, leaf in jax.tree_util.tree_leaves_with_path(params)}

    def splits(name: str, shape: tuple[int, ...], match: re.Match, axis: int,
               blocks: Sequence[str]) -> bool:
        if model == 1 or not -len(shape) <= axis < len(shape) or shape[axis] % model:
            return False
        if not blocks:
            return True
        counted = name[:match.start()] + match.expand(blocks[0]) + name[match.end():]
        if counted not in sizes:
            raise ValueError(f"sharding rule {match.re.pattern!r}: no parameter {counted!r} "
                             f"counts the blocks of {name!r}")
        return sizes[counted] % model == 0

    def sharding(path: tuple[Any, ...], leaf: Any) -> NamedSharding:
        name = path_name(path)
        for pattern, axis, *blocks in compiled:
            if match := pattern.search(name):
                if splits(name, leaf.shape, match, axis, blocks):
                    spec = [None] * len(leaf.shape)
                    spec[axis] = MODEL_AXIS
                    return NamedSharding(mesh, PartitionSpec(*spec))
                break
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree_util.tree_map_with_path(sharding, params)


class StepShardings(NamedTuple):
    """Where a train step's arguments live: pytrees of shardings like its inputs."""

    params: Any
    opt_state: Any
    batch: NamedSharding       # (B, ...) split on ``data``
    replicated: NamedSharding  # scalars: the loss, the learning-rate scale, flags

    @classmethod
    def build(cls, mesh: Mesh, params: Any, tx: optax.GradientTransformation,
              rules: ShardingRules = ()) -> "StepShardings":
        """Parameters by ``rules``; each optimizer-state leaf shaped like a parameter (Adam's
        moments) sharded like it, the rest (step counts) replicated."""
        replicated = NamedSharding(mesh, PartitionSpec())
        shardings = param_shardings(mesh, params, rules)
        opt_state = optax.tree_map_params(
            tx, lambda _, sharding: sharding, jax.eval_shape(tx.init, params), shardings,
            transform_non_params=lambda _: replicated)
        return cls(shardings, opt_state, NamedSharding(mesh, PartitionSpec(DATA_AXIS)), replicated)


def place(tree: Any, shardings: Any) -> Any:
    """Put a pytree that every process holds whole onto the mesh as global arrays."""
    def put(value: Any, sharding: NamedSharding) -> jax.Array:
        host = np.asarray(value)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree, shardings)


def to_host(tree: Any) -> Any:
    """Whole numpy copies of (possibly sharded, multi-process) arrays on every process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def sync(name: str) -> None:
    """Wait until every process gets here (a no-op in a one-process run)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def batch_sharding(mesh: Mesh, rows: int) -> NamedSharding:
    """Split ``rows`` over ``data`` when they divide evenly (a split's last, short batch in
    evaluation does not: it is replicated)."""
    even = rows % mesh.shape[DATA_AXIS] == 0
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS) if even else PartitionSpec())


def local_rows(sharding: NamedSharding, rows: int) -> slice:
    """The rows of a ``(rows, ...)`` batch that this process's devices hold (contiguous:
    :func:`jax.make_mesh` keeps a process's devices together)."""
    spans = {index[0].indices(rows)[:2]
             for index in sharding.addressable_devices_indices_map((rows,)).values()}
    start, stop = min(s for s, _ in spans), max(e for _, e in spans)
    if sum(e - s for s, e in spans) < stop - start:
        raise UserError(f"the mesh {dict(sharding.mesh.shape)} gives process "
                        f"{jax.process_index()} scattered batch rows; order mesh.data so that "
                        "each process holds whole data shards")
    return slice(start, stop)


def global_batch(sharding: NamedSharding, local: np.ndarray, rows: int) -> jax.Array:
    """A global ``(rows, ...)`` array from this process's rows ``local`` (:func:`local_rows`)."""
    return jax.make_array_from_process_local_data(sharding, local, (rows, *local.shape[1:]))


def device_bytes(tree: Any) -> int:
    """The most bytes of ``tree`` that any one device holds (per-device memory of a pytree of
    possibly sharded arrays)."""
    totals: dict[Any, int] = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            totals[shard.device] = totals.get(shard.device, 0) + shard.data.nbytes
    return max(totals.values(), default=0)
