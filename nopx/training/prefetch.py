"""Batches onto the devices: each process reads its rows, a thread works one step ahead.

:class:`BatchLoader` turns batch positions into global arrays sharded on the mesh's
``data`` axis, reading from the :class:`~nopx.training.source.Source` only the rows this
process's devices hold. :class:`Prefetch` runs that in a background thread so the next
batch is read and placed while the current step computes; it changes no order, so resumes
stay exact.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

import jax
import numpy as np

from nopx.parallel import batch_sharding, global_batch, local_rows
from nopx.training.source import Source

Item = TypeVar("Item")


class BatchLoader:
    """Global ``(x, y)`` batches on ``mesh`` (``None``: the default device)."""

    def __init__(self, source: Source, mesh: jax.sharding.Mesh | None) -> None:
        self.source = source
        self.mesh = mesh

    def load(self, positions: np.ndarray) -> tuple[jax.Array, jax.Array]:
        """Read this process's rows of the batch at ``positions`` and place the whole."""
        if self.mesh is None:
            x, y = self.source.read(positions)
            return jax.device_put(x), jax.device_put(y)
        sharding = batch_sharding(self.mesh, len(positions))
        x, y = self.source.read(positions[local_rows(sharding, len(positions))])
        return (global_batch(sharding, x, len(positions)),
                global_batch(sharding, y, len(positions)))

    def place(self, x: np.ndarray, y: np.ndarray) -> tuple[jax.Array, jax.Array]:
        """Place a batch every process holds whole (a stream's, not a random-access read)."""
        if self.mesh is None:
            return jax.device_put(x), jax.device_put(y)
        sharding = batch_sharding(self.mesh, len(x))
        rows = local_rows(sharding, len(x))
        return global_batch(sharding, x[rows], len(x)), global_batch(sharding, y[rows], len(x))


_END = object()


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetch(Generic[Item]):
    """Iterate ``items`` in a background thread, at most ``depth`` items ahead.

    An exception in the thread is raised by the ``next`` that would have returned the
    item. Use as a context manager (or call :meth:`close`) so a loop left early stops the
    thread.

    >>> with Prefetch(x * x for x in range(4)) as squares:
    ...     list(squares)
    [0, 1, 4, 9]
    """

    def __init__(self, items: Iterable[Item], depth: int = 2) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._fill, args=(iter(items),),
                                        name="nopx-prefetch", daemon=True)
        self._thread.start()

    def _fill(self, items: Iterator[Item]) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            self._put(_Raised(error))
            return
        self._put(_END)

    def _put(self, item: Any) -> bool:
        """Queue ``item`` unless the consumer has closed (then drop it and say so)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> "Prefetch[Item]":
        return self

    def __next__(self) -> Item:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Raised):
            self._done = True
            raise item.error
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "Prefetch[Item]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
