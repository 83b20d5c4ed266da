"""SOR whose relaxation factor ``ω`` a bandit learns along the sequence (Khodak et al., ICLR 2024).

Each system is solved by SOR sweeps (``pyamg``'s compiled Gauss–Seidel with
over-relaxation) from ``x = 0`` until the true residual reaches ``rtol``; ``ω`` comes from
a grid in ``[1, 2)`` chosen by :class:`~nopx.datagen.bandit.TsallisINF` (or
:class:`~nopx.datagen.bandit.Exp3`) with the sweep count over ``max_sweeps`` as the loss.
SOR is a slow solver (``O(n)`` sweeps on an ``n × n`` grid even at the best ``ω``): this
engine exists to tune ``ω`` online and to measure that tuning, not as a default.

>>> from nopx.datagen.stencil import diffusion_matrix
>>> A, b = diffusion_matrix(np.ones((8, 8))), np.ones(64)
>>> [(x, stats)] = SORSolver(rtol=1e-10).solve([(A, b)])
>>> stats.residual < 1e-10
True
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator
from typing import Literal

import numpy as np
import scipy.sparse as sp

from nopx.datagen.bandit import Exp3, TsallisINF
from nopx.datagen.solvers import SolveStats, System, register_solver

__all__ = ["SORSolver", "sor_sweeps"]


def sor_sweeps(matrix: sp.csr_matrix, rhs: np.ndarray, omega: float, *, rtol: float, max_sweeps: int,
               check: int = 5) -> tuple[np.ndarray, int]:
    """Forward SOR sweeps from 0 until ``‖b - A x‖ ≤ rtol ‖b‖`` (checked every ``check``): ``(x, sweeps)``."""
    from pyamg.relaxation.relaxation import sor  # a runtime dependency, imported late

    x = np.zeros_like(rhs)
    target = rtol * np.linalg.norm(rhs)
    sweeps = 0
    while sweeps < max_sweeps:
        sor(matrix, x, rhs, omega, iterations=check, sweep="forward")
        sweeps += check
        if np.linalg.norm(rhs - matrix @ x) <= target:
            break
    return x, sweeps


@dataclasses.dataclass(frozen=True)
class SORSolver:
    """SOR per system with a bandit-chosen ``ω``.

    Args:
      omegas: the grid of ``ω`` the bandit chooses from.
      bandit: ``tsallis`` (Tsallis-INF) or ``exp3``.
      rtol: the true relative residual to reach (a recipe passes ``solver.rtol``).
      max_sweeps: sweep cap per system; also the loss scale.
      seed: the bandit's random stream (each sequence starts it afresh).
    """

    omegas: tuple[float, ...] = tuple(np.round(np.linspace(1.0, 1.95, 20), 4).tolist())
    bandit: Literal["tsallis", "exp3"] = "tsallis"
    rtol: float = 1e-8
    max_sweeps: int = 5000
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.omegas or not all(0 < w < 2 for w in self.omegas):
            raise ValueError(f"omegas: need values in (0, 2), got {self.omegas}")
        if self.bandit not in ("tsallis", "exp3"):
            raise ValueError(f"bandit: tsallis or exp3, got {self.bandit!r}")

    def solve(self, systems: Iterable[System]) -> Iterator[tuple[np.ndarray, SolveStats]]:
        learner = (TsallisINF if self.bandit == "tsallis" else Exp3)(len(self.omegas), seed=self.seed)
        for matrix, rhs in systems:
            start = time.perf_counter()
            arm = learner.choose()
            x, sweeps = sor_sweeps(sp.csr_matrix(matrix), rhs, self.omegas[arm], rtol=self.rtol,
                                   max_sweeps=self.max_sweeps)
            learner.update(arm, sweeps / self.max_sweeps)
            yield x, SolveStats.measure(matrix, x, rhs, start=start, iterations=sweeps, matvecs=sweeps)


register_solver("sor", SORSolver, takes_rtol=True)
