"""The ``train`` and ``checkpoint`` sections: loop sizes, non-finite handling, the time
budget, and when checkpoints are written and which is the best."""

from __future__ import annotations

import dataclasses
from typing import Literal

from nopx.config.parsing import _require


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Loop sizes and bookkeeping. ``run_dir`` defaults to ``runs/<name>``.

    A non-finite loss or gradient stops the run with a diagnosis (``on_nonfinite: stop``),
    or (``rollback``) restores the last good checkpoint and continues with the learning
    rate multiplied by ``rollback_lr_factor``, at most ``max_rollbacks`` times.

    ``time_limit`` is a wall-clock budget for training in **minutes** (a float; ``null``:
    none), for comparing models at the same budget: training stops at the end of the first
    epoch that ends past it (that epoch is validated and checkpointed as usual), then the
    test split is evaluated on the validation-selected checkpoint and ``summary.json``
    records ``time_limit.stopped``. The clock counts the epochs (compilation, steps,
    validation, checkpoints), not the setup before them (data generation and loading). A
    resumed run continues the clock of the checkpoint it resumes from (time lost to a kill
    after that checkpoint is not counted), so the budget is for the whole run; resuming
    with a larger ``time_limit`` continues a run that stopped on its limit. The schedule
    is still planned over ``epochs``.
    """

    epochs: int = 10
    batch_size: int = 16
    eval_every: int = 1
    log_every: int = 50
    run_dir: str | None = None
    on_nonfinite: Literal["stop", "rollback"] = "stop"
    rollback_lr_factor: float = 0.5
    max_rollbacks: int = 3
    time_limit: float | None = None

    def __post_init__(self) -> None:
        _require(self.epochs > 0, "epochs", f"must be positive, got {self.epochs}")
        _require(self.time_limit is None or self.time_limit > 0, "time_limit",
                 f"must be a positive number of minutes (or null for none), got {self.time_limit}")
        _require(self.batch_size > 0, "batch_size", f"must be positive, got {self.batch_size}")
        _require(self.eval_every > 0, "eval_every", "must be a positive number of epochs")
        _require(self.log_every > 0, "log_every", "must be a positive number of steps")
        _require(0 < self.rollback_lr_factor < 1, "rollback_lr_factor",
                 f"must be in (0, 1), got {self.rollback_lr_factor}")
        _require(self.max_rollbacks >= 0, "max_rollbacks", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Orbax checkpointing: every ``every`` epochs and every ``every_steps`` steps (a kill
    loses at most that many steps), keep ``max_to_keep``, track the best on validation.

    ``best_metric`` is a ``val/`` metric (or ``train/loss``, or null for none): choosing a
    checkpoint by a ``test/`` metric would make the reported test error optimistic.
    """

    every: int = 1
    every_steps: int | None = None
    max_to_keep: int = 2
    best_metric: str | None = "val/rel_l2"
    best_mode: Literal["min", "max"] = "min"

    def __post_init__(self) -> None:
        _require(self.every > 0, "every", "must be a positive number of epochs")
        _require(self.every_steps is None or self.every_steps > 0, "every_steps",
                 "must be a positive number of steps")
        _require(self.max_to_keep > 0, "max_to_keep", "must be positive")
        metric = self.best_metric
        _require(metric is None or not metric.startswith("test/"), "best_metric",
                 f"{metric!r} would choose the checkpoint on the test set, so the test error "
                 "reported for it would be biased; select on the validation split instead "
                 f"(val/{metric.partition('/')[2] if metric else 'rel_l2'}); the test split is "
                 "evaluated once, at the end")
        _require(metric is None or metric.startswith(("val/", "train/")), "best_metric",
                 f"{metric!r} is not a metric the run logs; use val/rel_l2, val/h1 or train/loss")
