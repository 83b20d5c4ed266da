"""An endless stream of a recipe's samples, for online training (:mod:`nopx.training.online`).

The global sample indices from ``start`` on are cut into blocks of ``block`` consecutive
samples: block ``j`` holds ``start + j * block, ...``. Each block is made exactly as
:func:`~nopx.datagen.generate` makes a file of those samples
(:func:`~nopx.datagen.runner.solve_block`: chains planned within the block), so a sample's
values depend only on the recipe and its index, never on the process that made it or on
when: a stream made in this process and one made by workers hold the same samples, bit
for bit.

``workers=0`` makes each block in this process when :meth:`SampleStream.next` asks for it
(the order is fixed). ``workers=K`` starts ``K`` producer processes (``spawn``; one BLAS
thread and JAX on the CPU each, so they leave the cores' other threads and the accelerator
to training) that make blocks ``j, j + K, ...`` ahead of the consumer into a bounded queue
(at most two blocks per worker wait there; a full queue stalls the producers, so nothing
made is ever thrown away by the stream itself). Blocks then arrive in the order they finish.

>>> from nopx.datagen import recipe_from_mapping
>>> recipe = recipe_from_mapping({"pde": "darcy", "samples": 1, "out": "x.h5", "grid": {"n": 8},
...                               "darcy": {"modes": 4}, "solver": {"chain": 3}}, where="demo")
>>> with SampleStream(recipe, start=100, fields=("a", "u"), workers=0) as stream:
...     block = stream.next()
>>> block.indices.tolist(), block.fields["u"].shape
([100, 101, 102], (3, 8, 8))
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
from collections.abc import Generator, Sequence
from typing import Any, NamedTuple

import numpy as np

from nopx.datagen.recipe import Recipe
from nopx.datagen.runner import _single_threaded_children, block_size, solve_block
from nopx.errors import UserError

__all__ = ["Block", "SampleStream"]

#: Seconds between liveness checks: of the producers while waiting for a block, of the
#: consumer while a producer waits on a full queue.
POLL_SECONDS = 1.0


class Block(NamedTuple):
    """Samples of one block: global ``indices (m,)`` and ``fields {name: (m, *stored_shape)}``."""

    indices: np.ndarray
    fields: dict[str, np.ndarray]


def make_block(recipe: Recipe, start: int, block: int, j: int, fields: Sequence[str]) -> Block:
    """Block ``j`` of the stream of ``recipe`` from ``start`` (only ``fields``), in index order."""
    first = start + j * block
    chunks = list(solve_block(recipe, first, block))
    local = np.concatenate([np.asarray(c.indices, dtype=np.int64) for c in chunks])
    order = np.argsort(local)
    return Block(first + local[order],
                 {name: np.concatenate([c.fields[name] for c in chunks])[order] for name in fields})


def _produce(recipe: Recipe, start: int, block: int, first: int, worker: int, workers: int,
             fields: tuple[str, ...], out: Any) -> None:
    """A producer process: blocks ``first + worker``, ``+ workers``, ... into ``out`` until
    killed, or until the consumer is gone (killed itself: no orphan waits on a full queue)."""
    parent = multiprocessing.parent_process()
    j = first + worker
    try:
        while True:
            made = make_block(recipe, start, block, j, fields)
            while True:
                try:
                    out.put(made, timeout=POLL_SECONDS)
                    break
                except queue.Full:
                    if parent is None or not parent.is_alive():
                        return
            j += workers
    except Exception as err:  # the consumer reports it; a traceback in a child would be lost
        out.put(f"{type(err).__name__}: {err}" if not isinstance(err, UserError) else str(err))


class SampleStream:
    """Blocks of ``recipe``'s samples from global index ``start`` on (see the module doc).

    Args:
      recipe: what to make; its ``samples``/``out`` are not used.
      start: the first global index.
      fields: the stored fields to deliver (the others are dropped in the producer).
      workers: producer processes; 0 makes blocks in this process, in order.
      block: samples per block (default :func:`~nopx.datagen.runner.block_size`).
    """

    def __init__(self, recipe: Recipe, start: int, *, fields: Sequence[str], workers: int,
                 block: int | None = None) -> None:
        if workers < 0:
            raise UserError(f"stream workers: need 0 or more, got {workers}")
        self.recipe, self.start, self.fields, self.workers = recipe, start, tuple(fields), workers
        self.block = block or block_size(recipe)
        self._next = 0  # the next block made in this process (workers=0)
        self._processes: list[multiprocessing.Process] = []
        self._queue: Any = None

    def seek(self, j: int) -> None:
        """Produce from block ``j`` on (stops and restarts the producers)."""
        self.close()
        self._next = j
        if not self.workers:
            return
        context = multiprocessing.get_context("spawn")  # never fork a process holding JAX threads
        self._queue = context.Queue(maxsize=2 * self.workers)
        self._processes = [context.Process(
            target=_produce, args=(self.recipe, self.start, self.block, j, worker, self.workers,
                                   self.fields, self._queue), daemon=True)
            for worker in range(self.workers)]
        with _single_threaded_children(), _cpu_jax():
            for process in self._processes:
                process.start()

    def next(self) -> Block:
        """The next block: made now (``workers=0``), else the next to arrive (waits for it)."""
        if not self.workers:
            self._next += 1
            return make_block(self.recipe, self.start, self.block, self._next - 1, self.fields)
        if not self._processes:
            self.seek(self._next)
        while True:
            try:
                return self._checked(self._queue.get(timeout=POLL_SECONDS))
            except queue.Empty:
                dead = [p.exitcode for p in self._processes if p.exitcode is not None]
                if dead:
                    raise UserError(f"an online-data producer process died (exit code {dead[0]}: "
                                    "killed, or out of memory); use fewer data.online_workers") from None

    def ready(self) -> list[Block]:
        """The blocks that have arrived, without waiting (none with ``workers=0``)."""
        blocks = []
        while self._processes:
            try:
                blocks.append(self._checked(self._queue.get_nowait()))
            except queue.Empty:
                break
        return blocks

    @staticmethod
    def _checked(item: Block | str) -> Block:
        if isinstance(item, str):
            raise UserError(f"online data: a producer failed: {item}")
        return item

    def close(self) -> None:
        """Stop the producers (blocks in flight are lost)."""
        for process in self._processes:
            process.kill()
        for process in self._processes:
            process.join()
        if self._queue is not None:
            self._queue.cancel_join_thread()  # never block on data nobody will read
            self._queue.close()
        self._processes, self._queue = [], None

    def __enter__(self) -> "SampleStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _cpu_jax() -> Generator[None, None, None]:
    """Children started here run JAX on the CPU (unless the caller chose a platform)."""
    chosen = "JAX_PLATFORMS" in os.environ
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    try:
        yield
    finally:
        if not chosen:
            os.environ.pop("JAX_PLATFORMS", None)
