"""Orbax checkpoints of a run: the latest few for resuming, the best one for evaluation.

Layout inside the run directory::

    checkpoints/latest/<step>/   the last ``max_to_keep`` saves (resume reads the newest)
    checkpoints/best/<step>/     the save with the best ``best_metric`` (eval reads it)

Each save holds ``state`` (a pytree of arrays: parameters, optimizer state) and ``meta``
(JSON: epoch, step, the model's registry name and constructor arguments, the fitted
normalisers), so the run directory alone rebuilds the model. Saves are asynchronous; a
save cut short by a kill is never listed, so resuming falls back to the previous one.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from nopx.config import CheckpointConfig
from nopx.errors import UserError


class Checkpoints:
    """The latest/best pair of :class:`orbax.checkpoint.CheckpointManager`."""

    def __init__(self, run_dir: pathlib.Path, cfg: CheckpointConfig) -> None:
        root = pathlib.Path(run_dir).absolute() / "checkpoints"
        self.metric = cfg.best_metric
        self.latest = ocp.CheckpointManager(
            root / "latest", options=ocp.CheckpointManagerOptions(max_to_keep=cfg.max_to_keep))
        self.best = ocp.CheckpointManager(
            root / "best", options=ocp.CheckpointManagerOptions(
                max_to_keep=1, best_fn=lambda metrics: metrics[cfg.best_metric],
                best_mode=cfg.best_mode))

    def save(self, step: int, state: Any, meta: dict[str, Any],
             metrics: dict[str, float] | None) -> None:
        """Save asynchronously; also offer it as "best" when ``metrics`` has the tracked metric."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self.latest.save(step, args=args)
        if metrics and self.metric in metrics:
            self.best.save(step, args=args, metrics={self.metric: metrics[self.metric]})

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
        """Wait for pending saves and release the managers."""
        for manager in (self.latest, self.best):
            manager.wait_until_finished()
            manager.close()
