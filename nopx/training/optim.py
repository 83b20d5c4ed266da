"""The optimizer of a run: AdamW (or Adam) with a learning-rate schedule from the config.

A run's schedule is fixed when it starts: its length in epochs is part of it (cosine and
one-cycle decay over the whole run). ``nopx train --resume`` keeps it; ``--extend N``
appends a *phase*: the same kind of schedule, restarted from ``lr`` and run over the N new
epochs (a warm restart), after the finished ones. A schedule is the sequence of phases.
"""

from __future__ import annotations

from collections.abc import Sequence

import optax

from nopx.config import OptimConfig


def make_schedule(cfg: OptimConfig, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """Learning rate per step.

    - ``constant``: ``lr`` throughout (after warm-up).
    - ``cosine``: cosine decay from ``lr`` to ``final_lr_ratio * lr`` over the run.
    - ``step``: multiply by ``gamma`` every ``step_size`` epochs (the FNO paper's StepLR).
    - ``onecycle``: warm up over the first 30% then anneal (Smith's one-cycle).

    >>> from nopx.config import OptimConfig
    >>> s = make_schedule(OptimConfig(lr=1.0, schedule="step", step_size=2, gamma=0.5), 10, 100)
    >>> float(s(0)), float(s(19)), float(s(20)), float(s(45))
    (1.0, 1.0, 0.5, 0.25)
    """
    warmup = min(cfg.warmup_steps, total_steps)
    decay_steps = max(total_steps - warmup, 1)
    if cfg.schedule == "constant":
        main = optax.constant_schedule(cfg.lr)
    elif cfg.schedule == "cosine":
        main = optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.final_lr_ratio)
    elif cfg.schedule == "step":
        main = optax.exponential_decay(cfg.lr, transition_steps=cfg.step_size * steps_per_epoch,
                                       decay_rate=cfg.gamma, staircase=True)
    else:
        return optax.cosine_onecycle_schedule(total_steps, cfg.lr, pct_start=0.3,
                                              final_div_factor=1.0 / max(cfg.final_lr_ratio, 1e-4))
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warmup), main], [warmup])


def phased_schedule(cfg: OptimConfig, steps_per_epoch: int,
                    phases: Sequence[int]) -> optax.Schedule:
    """:func:`make_schedule` restarted at the start of each phase (lengths in epochs).

    >>> from nopx.config import OptimConfig
    >>> s = phased_schedule(OptimConfig(lr=1.0, schedule="cosine"), 10, [2, 1])
    >>> float(s(0)), round(float(s(19)), 4), float(s(20)), round(float(s(29)), 4)
    (1.0, 0.0062, 1.0, 0.0245)
    """
    schedules = [make_schedule(cfg, steps_per_epoch, epochs * steps_per_epoch) for epochs in phases]
    if len(schedules) == 1:
        return schedules[0]
    starts = [steps_per_epoch * sum(phases[:i]) for i in range(1, len(phases))]
    return optax.join_schedules(schedules, starts)


def make_optimizer(cfg: OptimConfig, steps_per_epoch: int,
                   phases: int | Sequence[int]) -> optax.GradientTransformation:
    """The gradient transformation: optional clipping, then Adam/AdamW on the schedule.

    ``phases`` is the run's length in epochs, or the epochs of each phase of an extended run.
    """
    schedule = phased_schedule(cfg, steps_per_epoch, [phases] if isinstance(phases, int) else phases)
    if cfg.optimizer == "adamw":
        opt = optax.adamw(schedule, weight_decay=cfg.weight_decay)
    else:
        opt = optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.adam(schedule)) \
            if cfg.weight_decay else optax.adam(schedule)
    if cfg.grad_clip is None:
        return opt
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt)
