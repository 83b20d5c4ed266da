"""The ``stages`` section: what runs after supervised training (Spectral-Refiner)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from nopx.config.parsing import _require


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """A stage after supervised training (which is always the first, "pretrain", stage).

    ``spectral_refine`` (Spectral-Refiner, for an ``sfno`` on a Navier–Stokes trajectory
    task): per test trajectory, enlarge the last spectral layer to ``modes`` (per-sign
    ``(m_x, m_y, m_t)``; default: the whole grid and one more time mode than trained),
    freeze the rest, and fit it for ``iterations`` Adam steps (``lr_weight`` on weights,
    ``lr_bias`` on the spectral bias) to the H^-1(``alpha``) norm of the NSE residual of
    the predicted trajectory, in float64. ν, forcing and the slice spacing come from the
    dataset's recipe. ``samples`` test trajectories are refined, ``batch`` at a time.
    ``anchor`` (with ``time_derivative: fd``) measures the residual from the last input
    slice on, so the first predicted slice is tied to the input (:func:`nopx.refine.refine`).
    The residual is that of the physical equation: the run needs ``data.normalize: false``.
    """

    kind: Literal["spectral_refine"]
    name: str = "spectral_refine"
    iterations: int = 50
    modes: tuple[int, ...] | None = None
    lr_weight: float = 1e-4
    lr_bias: float = 0.2
    alpha: float = 10 ** -1.5
    time_derivative: Literal["spectral", "fd"] = "spectral"
    anchor: bool = False
    samples: int = 8
    batch: int = 4

    def __post_init__(self) -> None:
        _require(self.iterations > 0, "iterations", "must be positive")
        _require(self.modes is None or len(self.modes) == 3, "modes", "give (m_x, m_y, m_t)")
        _require(self.lr_weight > 0 and self.lr_bias > 0, "lr_weight", "learning rates must be positive")
        _require(self.alpha > 0, "alpha", "must be positive")
        _require(self.samples > 0 and self.batch > 0, "samples", "samples and batch must be positive")
        _require(not self.anchor or self.time_derivative == "fd", "anchor",
                 "needs time_derivative: fd (finite differences from the last input slice)")
