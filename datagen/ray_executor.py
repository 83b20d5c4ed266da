"""Run the datagen runner's chains as Ray tasks: ``nopx datagen --executor ray [--address ADDR]``.

The runner plans the same chains as for a single process and this module only moves them:
each chain is one Ray task (one CPU), solved by the same function a worker process runs,
and the results come back to the calling process, the only HDF5 writer. A file made on a
Ray cluster is therefore bit-identical, sample for sample, to one made by a single process
(only ``meta/order``, ``meta/seconds`` and ``created`` differ); ``--resume`` and
``--shard`` work as without Ray. Ray is an optional dependency: ``pip install "nopx[ray]"``.

Without ``address`` (or with ``address="local"``) a Ray instance is started on this machine
with ``workers`` CPUs and stopped at the end; ``address="auto"`` or ``"ray://HOST:10001"``
joins a running cluster (which is left running). Every node needs nopx installed, and the
modules a recipe's ``imports`` name at the same paths.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterable
from typing import Any, TypeVar

from nopx.errors import UserError

__all__ = ["ray_map", "require_ray"]

T = TypeVar("T")
R = TypeVar("R")

#: Tasks in flight per cluster CPU: enough to keep every CPU busy while results are written,
#: few enough that results do not pile up in the object store faster than the file takes them.
IN_FLIGHT_PER_CPU = 2


def require_ray() -> Any:
    """The ``ray`` module, or a :class:`UserError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError('--executor ray: Ray is not installed; install it with pip install '
                        '"nopx[ray]" (or pip install ray), or drop --executor ray') from None
    return ray


def ray_map(function: Callable[[T], R], tasks: Iterable[T], *, address: str | None = None,
            workers: int = 1) -> Generator[R, None, None]:
    """``function(task)`` for every task as Ray tasks; yields the results as they finish.

    Joins the cluster at ``address`` (see the module doc), or uses the Ray instance this
    process already started; otherwise starts a local one with ``workers`` CPUs.
    """
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        local = address in (None, "local")
        try:
            ray.init(address=None if local else address, num_cpus=workers if local else None,
                     include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise UserError(f"--executor ray: cannot reach a Ray cluster at {address!r} ({err}); "
                            "check --address (e.g. auto on a cluster node, ray://HOST:10001), or "
                            "omit it to run on this machine") from None
    try:
        remote = ray.remote(num_cpus=1)(function)
        limit = max(1, IN_FLIGHT_PER_CPU * int(ray.cluster_resources().get("CPU", 1)))
        pending = iter(tasks)
        running = [remote.remote(task) for task in itertools.islice(pending, limit)]
        while running:
            [done], running = ray.wait(running, num_returns=1)
            yield _result(ray, done)
            running += [remote.remote(task) for task in itertools.islice(pending, 1)]
    finally:
        if started:
            ray.shutdown()


def _result(ray: Any, ref: Any) -> Any:
    """The task's value; a :class:`UserError` raised in the task is re-raised as itself."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, UserError):  # a failed sample: the message names it and the fix
            raise UserError(str(err.cause)) from None
        raise
    except ray.exceptions.WorkerCrashedError:
        raise UserError("a Ray worker died while solving (killed, or out of memory); "
                        "--resume continues from the samples written") from None
