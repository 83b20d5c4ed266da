"""The optimizer of a run: AdamW (or Adam) with a learning-rate schedule from the config."""

from __future__ import annotations

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


def make_optimizer(cfg: OptimConfig, steps_per_epoch: int,
                   total_steps: int) -> optax.GradientTransformation:
    """The gradient transformation: optional clipping, then Adam/AdamW on the schedule."""
    schedule = make_schedule(cfg, steps_per_epoch, total_steps)
    if cfg.optimizer == "adamw":
        opt = optax.adamw(schedule, weight_decay=cfg.weight_decay)
    else:
        opt = optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.adam(schedule)) \
            if cfg.weight_decay else optax.adam(schedule)
    if cfg.grad_clip is None:
        return opt
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt)
