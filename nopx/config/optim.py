"""The ``optim`` section: the optimizer, its learning-rate schedule and per-group factors."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Literal

from nopx.config.parsing import _require


def _is_regex(pattern: Any) -> bool:
    try:
        re.compile(pattern)
    except (re.error, TypeError):
        return False
    return True


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW and its learning-rate schedule (``step_size`` is in epochs).

    ``group_lr`` maps regular expressions on parameter paths (``lifting.layers.0.kernel``)
    to learning-rate factors: the first match wins, unmatched parameters use ``lr``.
    """

    optimizer: Literal["adamw", "adam"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: Literal["constant", "cosine", "step", "onecycle"] = "cosine"
    warmup_steps: int = 0
    step_size: int = 100
    gamma: float = 0.5
    final_lr_ratio: float = 0.0
    grad_clip: float | None = None
    group_lr: dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        _require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        _require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        _require(self.step_size > 0, "step_size", "must be a positive number of epochs")
        _require(0 < self.gamma <= 1, "gamma", f"must be in (0, 1], got {self.gamma}")
        _require(0 <= self.final_lr_ratio <= 1, "final_lr_ratio", "must be in [0, 1]")
        _require(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "must be positive")
        for pattern, factor in self.group_lr.items():
            _require(_is_regex(pattern), "group_lr", f"{pattern!r} is not a regular expression")
            _require(isinstance(factor, (int, float)) and not isinstance(factor, bool)
                     and factor > 0, "group_lr", f"the factor of {pattern!r} must be a positive "
                     f"number, got {factor!r}")
