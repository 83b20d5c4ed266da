"""Preconditioned Krylov engines from SciPy: CG for SPD systems, restarted GMRES(m) for any.

Each system is solved from ``x0 = 0`` (or from the previous solution with ``warm_start``)
with a preconditioner rebuilt for its matrix (:mod:`~nopx.datagen.preconditioners`).
Mat-vecs are counted on ``A`` itself; the engines' own stopping tests are only hints, the
stats carry the true residual.

>>> from nopx.datagen.stencil import diffusion_matrix
>>> A, b = diffusion_matrix(np.ones((8, 8))), np.ones(64)
>>> [(x, stats)] = KrylovSolver(method="cg", preconditioner="jacobi").solve([(A, b)])
>>> stats.residual < 1e-8, stats.matvecs == stats.iterations > 0
(True, True)
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Iterable, Iterator
from typing import Literal

import numpy as np
import scipy.sparse.linalg as spla

from nopx.datagen.preconditioners import PRECONDITIONERS, build_preconditioner
from nopx.datagen.solvers import SolveStats, System, register_solver

__all__ = ["KrylovSolver", "CountingOperator"]


class CountingOperator(spla.LinearOperator):
    """``A`` as a linear operator that counts its products (``count``)."""

    def __init__(self, matrix) -> None:
        super().__init__(dtype=np.float64, shape=matrix.shape)
        self.matrix = matrix
        self.count = 0

    def _matvec(self, v: np.ndarray) -> np.ndarray:
        self.count += 1
        return self.matrix @ v


@dataclasses.dataclass(frozen=True)
class KrylovSolver:
    """SciPy ``cg`` or ``gmres`` per system, at the runner's tolerance.

    Args:
      method: ``cg`` (SPD matrices and preconditioners) or ``gmres`` (restarted, left-preconditioned).
      preconditioner: ``none``, ``jacobi``, ``ilu`` or ``amg``.
      rtol: the true relative residual to reach (a recipe passes ``solver.rtol``); SciPy's
        stopping tests run at half of it, since CG's recurrence residual can drift from the true one.
      restart: GMRES's ``m``.
      maxiter: iteration cap (GMRES: restart cycles).
      warm_start: start each system from the previous solution.
    """

    method: Literal["cg", "gmres"] = "cg"
    preconditioner: str = "amg"
    rtol: float = 1e-8
    restart: int = 40
    maxiter: int = 2000
    warm_start: bool = False

    def __post_init__(self) -> None:
        if self.method not in ("cg", "gmres"):
            raise ValueError(f"method: 'cg' or 'gmres', got {self.method!r}")
        if self.preconditioner not in PRECONDITIONERS:
            raise ValueError(f"preconditioner: unknown {self.preconditioner!r} "
                             f"(available: {', '.join(PRECONDITIONERS)})")

    def solve(self, systems: Iterable[System]) -> Iterator[tuple[np.ndarray, SolveStats]]:
        previous = None
        for matrix, rhs in systems:
            start = time.perf_counter()
            operator = CountingOperator(matrix)
            M = build_preconditioner(self.preconditioner, matrix)
            x0 = previous if self.warm_start and previous is not None else None
            iterations = [0]

            def count(_: object) -> None:
                iterations[0] += 1

            if self.method == "cg":
                x, _ = spla.cg(operator, rhs, x0=x0, rtol=0.5 * self.rtol, atol=0.0, maxiter=self.maxiter, M=M,
                               callback=count)
            else:
                x, _ = spla.gmres(operator, rhs, x0=x0, rtol=0.5 * self.rtol, atol=0.0, restart=self.restart,
                                  maxiter=self.maxiter, M=M, callback=count, callback_type="pr_norm")
            previous = x
            yield x, SolveStats.measure(matrix, x, rhs, start=start, iterations=iterations[0],
                                        matvecs=operator.count)


register_solver("cg", functools.partial(KrylovSolver, method="cg"), takes_rtol=True)
register_solver("gmres", functools.partial(KrylovSolver, method="gmres", preconditioner="ilu"), takes_rtol=True)
