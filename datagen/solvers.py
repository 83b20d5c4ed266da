"""Linear-solver engines: a solver takes a sequence of sparse systems and returns solutions plus stats.

The sequence is the seam for engines that exploit neighbouring systems (recycled Krylov
spaces, a reused factorisation, a warm start); a plain engine just loops. Every engine
reports, per system, the iterations and matrix-vector products it spent, the wall time,
and the *true* relative residual ``‖b - A x‖ / ‖b‖`` recomputed from the returned ``x``
(never the engine's own estimate), which the runner checks against the recipe's tolerance.

Engines register by name (``solver: {method: direct}`` in a recipe):

>>> available_solvers()
('direct',)
>>> import scipy.sparse as sp
>>> A = sp.csc_matrix(np.array([[4.0, 1.0], [1.0, 3.0]]))
>>> [(x, stats)] = build_solver("direct").solve([(A, np.array([1.0, 2.0]))])
>>> x.round(6), stats.residual < 1e-15
(array([0.090909, 0.636364]), True)
"""

from __future__ import annotations

import dataclasses
import difflib
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__ = [
    "Solver",
    "SolveStats",
    "DirectSolver",
    "relative_residual",
    "build_solver",
    "available_solvers",
    "register_solver",
]

System = tuple[sp.spmatrix | sp.sparray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class SolveStats:
    """What one solve cost and how good it is.

    ``iterations`` and ``matvecs`` are 0 for a direct solve (the residual check's product
    is not counted); ``residual`` is the true relative residual; ``seconds`` is wall time
    including any factorisation.
    """

    iterations: int
    matvecs: int
    residual: float
    seconds: float


class Solver(Protocol):
    """An engine: ``solve(systems)`` returns one ``(x, stats)`` per ``(A, b)``, in order."""

    def solve(self, systems: Sequence[System]) -> list[tuple[np.ndarray, SolveStats]]: ...


def relative_residual(matrix: sp.spmatrix | sp.sparray, x: np.ndarray, b: np.ndarray) -> float:
    """``‖b - A x‖₂ / ‖b‖₂`` (``‖b - A x‖₂`` when ``b = 0``).

    >>> relative_residual(sp.identity(3), np.ones(3), np.array([1.0, 1.0, 2.0])).round(4)
    np.float64(0.4082)
    """
    norm_b = np.linalg.norm(b)
    error = np.linalg.norm(b - matrix @ x)
    return error / norm_b if norm_b > 0 else error


@dataclasses.dataclass(frozen=True)
class DirectSolver:
    """Sparse LU per system (SuperLU via ``scipy.sparse.linalg.splu``).

    Args:
      permc_spec: SuperLU's column ordering. ``"MMD_AT_PLUS_A"`` (minimum degree on
        ``Aᵀ + A``) suits the symmetric 5-point stencils and measured 1.5x faster than
        ``spsolve``'s default COLAMD on Darcy; ``"COLAMD"`` suits non-symmetric patterns.
    """

    permc_spec: str = "MMD_AT_PLUS_A"

    def solve(self, systems: Sequence[System]) -> list[tuple[np.ndarray, SolveStats]]:
        results = []
        for matrix, rhs in systems:
            start = time.perf_counter()
            lu = spla.splu(matrix.tocsc(), permc_spec=self.permc_spec)
            x = lu.solve(rhs)
            seconds = time.perf_counter() - start
            stats = SolveStats(0, 0, float(relative_residual(matrix, x, rhs)), seconds)
            results.append((x, stats))
        return results


_SOLVERS: dict[str, Callable[..., Solver]] = {}


def register_solver(name: str, factory: Callable[..., Solver]) -> None:
    """Make ``factory(**options)`` available as ``solver: {method: name, options: {...}}``."""
    _SOLVERS[name] = factory


def available_solvers() -> tuple[str, ...]:
    """Names of the registered engines."""
    return tuple(_SOLVERS)


def build_solver(method: str, **options: Any) -> Solver:
    """The engine registered as ``method``, built with ``options``.

    Raises:
      ValueError: ``"method: ..."`` for an unknown name, naming the closest one.
    """
    if method not in _SOLVERS:
        close = difflib.get_close_matches(method, list(_SOLVERS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"method: unknown solver {method!r}{hint} (available: {', '.join(_SOLVERS)})")
    return _SOLVERS[method](**options)


register_solver("direct", DirectSolver)
