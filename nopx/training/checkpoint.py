"""Orbax checkpoints of a run: the latest few for resuming, the best one for evaluation.

Layout inside the run directory::

    checkpoints/latest/<step>/   the last ``max_to_keep`` saves (resume reads the newest)
    checkpoints/best/<step>/     the save with the best validation ``best_metric`` (eval reads it)

Each save holds ``state`` (a pytree of arrays: parameters, optimizer state) and ``meta``
(JSON: epoch, step, the position within the epoch, the model's registry name and
constructor arguments, the fitted normalisers), so the run directory alone rebuilds the
model and resumes it mid-epoch. Saves are asynchronous; a save cut short by a kill is
never listed, so resuming falls back to the previous one. The loop saves only states it
has checked to be finite. A full disk is a :class:`~nopx.errors.UserError`; the first save
puts a :class:`ClosedLoopFilter` in front of :data:`sys.unraisablehook` for the process, so
that the follow-on reports of a failed write do not bury that message (nothing else is
filtered).

Arrays are saved as they are sharded and restored into the shardings of ``like`` (any
mesh: a run saved on 8 devices resumes on 2, or on one). In a multi-process run every
process calls :meth:`Checkpoints.save` and :meth:`Checkpoints.restore` (orbax writes each
shard once, and the JSON from process 0).
"""

from __future__ import annotations

import contextlib
import errno
import pathlib
import sys
from collections.abc import Iterator
from typing import Any

import jax
import orbax.checkpoint as ocp

from nopx.config import CheckpointConfig
from nopx.errors import UserError


class Checkpoints:
    """The latest/best pair of :class:`orbax.checkpoint.CheckpointManager`."""

    def __init__(self, run_dir: pathlib.Path, cfg: CheckpointConfig, *,
                 writer: bool = False) -> None:
        """``writer``: the training run that owns the folder, which removes the temporary
        folders left by a save cut short (a kill, a full disk). Readers (``nopx eval``,
        possibly while training runs) leave them alone."""
        self.root = pathlib.Path(run_dir).absolute() / "checkpoints"
        self.metric = cfg.best_metric
        self.broken = False  # a save failed: pending writes are abandoned, not awaited
        self.latest = ocp.CheckpointManager(self.root / "latest", options=ocp.CheckpointManagerOptions(
            max_to_keep=cfg.max_to_keep, cleanup_tmp_directories=writer))
        self.best = ocp.CheckpointManager(self.root / "best", options=ocp.CheckpointManagerOptions(
            max_to_keep=1, best_fn=lambda metrics: metrics[cfg.best_metric],
            best_mode=cfg.best_mode, cleanup_tmp_directories=writer))

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn a full disk (reported by orbax's writer threads) into a :class:`UserError`."""
        try:
            yield
        except Exception as err:
            if not _disk_full(err):
                raise
            self.broken = True
            done = self.latest.latest_step()
            raise UserError(
                f"{self.root}: the disk is full, a checkpoint could not be written; free space "
                f"(or move train.run_dir) and rerun with --resume: the run continues from its "
                f"last complete checkpoint (step {done}), nothing before it is lost") from None

    def save(self, step: int, state: Any, meta: dict[str, Any],
             metrics: dict[str, float] | None = None, *, latest: bool = True) -> None:
        """Save asynchronously as the latest (if ``latest``) and offer it as "best" when
        ``metrics`` has the tracked metric."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        quiet_closed_loop_reports()
        with self._writing():
            if latest:
                self.latest.save(step, args=args)
            if metrics and self.metric in metrics:
                self.best.save(step, args=args, metrics={self.metric: metrics[self.metric]})

    def has_best(self) -> bool:
        return self.best.best_step() is not None

    def wait(self) -> None:
        """Block until the pending asynchronous saves are on disk."""
        with self._writing():
            for manager in (self.latest, self.best):
                manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def restore(self, like: Any, *, which: str = "latest") -> tuple[Any, dict[str, Any]]:
        """Restore ``(state, meta)``; ``like`` is a pytree with the state's structure."""
        manager = self.best if which == "best" else self.latest
        step = manager.best_step() if which == "best" else manager.latest_step()
        if step is None:
            raise UserError(f"{manager.directory}: no checkpoint to restore; train first")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return restored.state, restored.meta

    def read_meta(self, *, which: str = "latest") -> dict[str, Any]:
        """The JSON metadata of the newest (or best) checkpoint, without reading arrays."""
        manager = self.best if which == "best" else self.latest
        step = manager.best_step() if which == "best" else manager.latest_step()
        if step is None:
            raise UserError(f"{manager.directory}: no checkpoint found; train first")
        return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def close(self) -> None:
        """Wait for pending saves and release the managers (after a failed save: release only)."""
        if not self.broken:
            self.wait()
            for manager in (self.latest, self.best):
                manager.close()


def _disk_full(err: BaseException) -> bool:
    """Whether ``err`` (an ``OSError``, or orbax's ``ValueError`` from tensorstore) is ENOSPC."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    return "No space left on device" in str(err) or f"os_error_code='{errno.ENOSPC}'" in str(err)


class ClosedLoopFilter:
    """A :data:`sys.unraisablehook` that drops the follow-on reports of a failed orbax save
    and passes every other report to ``previous``.

    A failed write (a full disk) ends the event loop of orbax's writer while tensorstore
    writes of the same save are still in flight. As each of them completes, tensorstore's
    C++ callback thread calls ``loop.call_soon_threadsafe`` on the closed loop, and Python
    reports the ``RuntimeError('Event loop is closed')`` as unraisable: a bare traceback on
    stderr, from a thread Python did not start (not through :data:`threading.excepthook`),
    often before the main thread has seen the failure. What is dropped is exactly that:
    the error raised by asyncio's ``call_soon_threadsafe`` called straight from C code, with
    no object attached; the failure itself reaches the caller of :meth:`Checkpoints.save` or
    :meth:`Checkpoints.wait`.
    """

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(self, unraisable: Any) -> None:
        if not _closed_loop_callback(unraisable):
            self.previous(unraisable)


def quiet_closed_loop_reports() -> None:
    """Put a :class:`ClosedLoopFilter` in front of :data:`sys.unraisablehook`, once: before the
    first save, as the reports can precede the failure's :class:`UserError`."""
    if not isinstance(sys.unraisablehook, ClosedLoopFilter):
        sys.unraisablehook = ClosedLoopFilter(sys.unraisablehook)


def _closed_loop_callback(unraisable: Any) -> bool:
    """Whether an unraisable report is ``loop.call_soon_threadsafe`` on a closed asyncio loop,
    called from C (its traceback starts in that method: no Python frame called it)."""
    tb = unraisable.exc_traceback
    return (unraisable.object is None and type(unraisable.exc_value) is RuntimeError
            and str(unraisable.exc_value) == "Event loop is closed" and tb is not None
            and tb.tb_frame.f_code.co_name == "call_soon_threadsafe"
            and tb.tb_frame.f_globals.get("__name__") == "asyncio.base_events")
