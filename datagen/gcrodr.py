r"""GCRO-DR: restarted GMRES that deflates a recycled subspace, carried along a sequence of systems.

GCRO-DR(m, k) (Parks, de Sturler, Mackey, Johnson, Maiti 2006) keeps ``k`` approximate
eigenvectors of ``A`` for its smallest-magnitude eigenvalues, the *harmonic Ritz vectors* of
the last cycle, as a basis ``X`` with ``C = A X`` orthonormal. A cycle minimises the residual
over ``range(X) + K_{m-k}((I - C Cᵀ) A M, r)``, so the slow modes that make restarted GMRES
stall are solved exactly in ``range(X)`` and never rebuilt. When the matrix changes, ``X``
is kept and refitted with ``k`` products: ``Q R = A_new X``, ``C = Q``, ``X ← X R⁻¹``. This
is SKR's engine (Wang et al., ICLR 2024: m = 40, k = 20 on a sorted sequence).

The recycled vectors live in the solution space and the preconditioner ``M`` is applied
on the right (the *flexible* form of Carvalho, Giraud and Le Tallec 2011): refitting needs
products with ``A`` only, a preconditioner rebuilt for each matrix is allowed, and the
minimised residual is the true one. With ``M = I`` it is Parks et al.'s algorithm; on a
single system it is equivalent to GMRES-DR; with ``k = 0`` it is restarted GMRES(m).

A cycle with ``j`` Arnoldi steps and ``k`` recycled vectors satisfies

.. math::

    A\,[X D,\; M V_j] = [C,\; V_{j+1}]\,\hat G, \qquad
    \hat G = \begin{bmatrix} D & B \\ 0 & \bar H_j \end{bmatrix},

``D`` scaling ``X``'s columns to unit length; ``Ĝ`` is upper Hessenberg, so the small
least-squares problem is updated by Givens rotations step by step.

>>> from nopx.datagen.stencil import diffusion_matrix
>>> A = diffusion_matrix(np.exp(np.random.default_rng(0).standard_normal((16, 16))))
>>> solver = GCRODR(m=20, k=5, preconditioner="none", rtol=1e-10)
>>> first, second = solver.solve([(A, np.ones(256)), (A, np.arange(256.0))])
>>> first[1].residual < 1e-10, second[1].matvecs < first[1].matvecs
(True, True)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator

import numpy as np
import scipy.linalg as sla

from nopx.datagen.preconditioners import PRECONDITIONERS, build_preconditioner
from nopx.datagen.solvers import SolveStats, System, register_solver, same_matrix

__all__ = ["GCRODR", "Recycled"]


@dataclasses.dataclass
class Recycled:
    """The recycled space: ``X`` ``(n, k)`` in solution space with ``A X = C``, ``C`` ``(n, k)`` orthonormal."""

    X: np.ndarray
    C: np.ndarray

    @classmethod
    def fit(cls, matrix, X: np.ndarray) -> Recycled | None:
        """``X`` refitted to ``matrix`` (``k`` mat-vecs); ``None`` if ``X`` has lost rank."""
        Q, R = np.linalg.qr(matrix @ X)
        diagonal = np.abs(np.diag(R))
        if diagonal.size == 0 or diagonal.min() <= 1e-12 * diagonal.max():
            return None
        return cls(X=sla.solve_triangular(R, X.T, trans="T").T, C=Q)


class _Cycle:
    """One GCRO-DR cycle's Arnoldi process and its Givens-rotated least-squares problem."""

    def __init__(self, n: int, k: int, steps: int) -> None:
        self.k, self.steps = k, steps
        self.V = np.zeros((n, steps + 1))
        self.Z = np.zeros((n, steps))  # M V: the search directions in solution space
        self.G = np.zeros((k + steps + 1, k + steps))
        self.unrotated = np.zeros_like(self.G)  # Ĝ itself, for the harmonic Ritz problem
        self.g = np.zeros(k + steps + 1)
        self.rotations = np.zeros((k + steps, 2))
        self.j = 0

    def start(self, recycled: Recycled | None, r: np.ndarray) -> float:
        beta = float(np.linalg.norm(r))
        self.V[:, 0] = r / beta
        self.g[self.k] = beta
        if recycled is not None:
            # X D has unit columns; A (X D) = C D, so Ĝ starts with D and needs no rotation.
            self.scale = 1.0 / np.linalg.norm(recycled.X, axis=0)
            self.G[np.arange(self.k), np.arange(self.k)] = self.scale
            self.unrotated[np.arange(self.k), np.arange(self.k)] = self.scale
            self.rotations[: self.k] = (1.0, 0.0)
        return beta

    def step(self, matrix, precondition, recycled: Recycled | None) -> float:
        """One Arnoldi step (one product with ``A``); returns the least-squares residual norm."""
        j, k = self.j, self.k
        self.Z[:, j] = precondition(self.V[:, j])
        w = matrix @ self.Z[:, j]
        column = self.G[:, k + j]
        if recycled is not None:
            column[:k] = recycled.C.T @ w
            w -= recycled.C @ column[:k]
        V = self.V[:, : j + 1]
        h = V.T @ w
        w -= V @ h
        correction = V.T @ w  # classical Gram–Schmidt, twice: as stable as modified, and BLAS-2
        w -= V @ correction
        column[k: k + j + 1] = h + correction
        column[k + j + 1] = np.linalg.norm(w)
        if column[k + j + 1] > 0:
            self.V[:, j + 1] = w / column[k + j + 1]
        self.unrotated[:, k + j] = column
        self._rotate(k + j)
        self.j += 1
        return abs(self.g[k + j + 1])

    def _rotate(self, col: int) -> None:
        column = self.G[:, col]
        for i in range(self.k, col):
            c, s = self.rotations[i]
            column[i], column[i + 1] = c * column[i] + s * column[i + 1], -s * column[i] + c * column[i + 1]
        a, b = column[col], column[col + 1]
        radius = np.hypot(a, b)
        c, s = (a / radius, b / radius) if radius > 0 else (1.0, 0.0)
        self.rotations[col] = c, s
        column[col], column[col + 1] = radius, 0.0
        self.g[col], self.g[col + 1] = c * self.g[col], -s * self.g[col]

    def update(self, recycled: Recycled | None) -> np.ndarray:
        """The correction ``[X D, Z] y`` minimising the residual over this cycle's space."""
        size = self.k + self.j
        y = sla.solve_triangular(self.G[:size, :size], self.g[:size])
        dx = self.Z[:, : self.j] @ y[self.k:]
        if recycled is not None:
            dx += recycled.X @ (self.scale * y[: self.k])
        return dx


def _next_recycled(cycle: _Cycle, recycled: Recycled | None, k: int) -> Recycled | None:
    """The ``k`` harmonic Ritz vectors of smallest |θ| of this cycle, as the next recycled space.

    With ``A V̂ = Ŵ Ĝ`` (``V̂ = [X D, Z]``, ``Ŵ = [C, V]``) they solve ``Ĝᵀ Ĝ z = θ Ĝᵀ Ŵᵀ V̂ z``.
    For ``P`` spanning the chosen ``z`` (real and imaginary parts of complex pairs), ``Q R = Ĝ P``
    gives ``X = V̂ P R⁻¹`` and ``C = Ŵ Q``, with ``A X = C`` and no mat-vec.
    """
    j = cycle.j
    k0 = cycle.k if recycled is not None else 0
    V_hat = cycle.Z[:, :j] if recycled is None else np.hstack([recycled.X * cycle.scale, cycle.Z[:, :j]])
    W_hat = cycle.V[:, : j + 1] if recycled is None else np.hstack([recycled.C, cycle.V[:, : j + 1]])
    G = cycle.unrotated[: k0 + j + 1, : k0 + j]
    theta, vectors = sla.eig(G.T @ G, G.T @ (W_hat.T @ V_hat))
    finite = np.flatnonzero(np.isfinite(theta))
    chosen = finite[np.argsort(np.abs(theta[finite]), kind="stable")][:k]
    columns = []
    for i in chosen:
        if theta[i].imag < 0 and np.conj(theta[i]) in theta[chosen]:
            continue  # its conjugate partner already contributed the real and imaginary parts
        columns.append(vectors[:, i].real)
        if theta[i].imag != 0:
            columns.append(vectors[:, i].imag)
    if not columns:
        return None
    P, _ = np.linalg.qr(np.column_stack(columns))
    Q, R = np.linalg.qr(G @ P)
    diagonal = np.abs(np.diag(R))
    if diagonal.min() <= 1e-12 * diagonal.max():
        return None
    return Recycled(X=sla.solve_triangular(R, (V_hat @ P).T, trans="T").T, C=W_hat @ Q)


@dataclasses.dataclass(frozen=True)
class GCRODR:
    """GCRO-DR(m, k) on a sequence, recycling ``k`` harmonic Ritz vectors from system to system.

    Args:
      m: the largest search space per cycle (recycled vectors included), SKR: 40.
      k: recycled vectors, SKR: 20; ``k = 0`` is restarted GMRES(m).
      preconditioner: ``none``, ``jacobi``, ``ilu`` or ``amg``, rebuilt per matrix, applied on the right.
      rtol: the true relative residual to reach (a recipe passes ``solver.rtol``).
      max_matvecs: give up on a system after this many products (the runner then retries it
        with a direct solve and flags it).
      warm_start: start from the previous system's solution instead of 0.
    """

    m: int = 40
    k: int = 20
    preconditioner: str = "jacobi"
    rtol: float = 1e-8
    max_matvecs: int = 10_000
    warm_start: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.k < self.m:
            raise ValueError(f"k: need 0 <= k < m = {self.m}, got {self.k}")
        if self.preconditioner not in PRECONDITIONERS:
            raise ValueError(f"preconditioner: unknown {self.preconditioner!r} "
                             f"(available: {', '.join(PRECONDITIONERS)})")

    def solve(self, systems: Iterable[System]) -> Iterator[tuple[np.ndarray, SolveStats]]:
        recycled, previous_matrix, previous_x = None, None, None
        for matrix, rhs in systems:
            start = time.perf_counter()
            precondition = build_preconditioner(self.preconditioner, matrix).matvec
            matvecs = 0
            if recycled is not None and not same_matrix(previous_matrix, matrix):
                recycled = Recycled.fit(matrix, recycled.X)
                matvecs += self.k
            x = np.zeros_like(rhs) if previous_x is None or not self.warm_start else previous_x.copy()
            x, recycled, cycles, spent = self._solve_one(matrix, rhs, x, recycled, precondition)
            previous_matrix, previous_x = matrix, x
            yield x, SolveStats.measure(matrix, x, rhs, start=start, iterations=cycles,
                                        matvecs=matvecs + spent)

    def _solve_one(self, matrix, rhs: np.ndarray, x: np.ndarray, recycled: Recycled | None,
                   precondition) -> tuple[np.ndarray, Recycled | None, int, int]:
        """Cycles until the true residual reaches ``rtol``: ``(x, recycled, cycles, mat-vecs)``."""
        target = self.rtol * np.linalg.norm(rhs)
        r = rhs - matrix @ x if x.any() else rhs.copy()
        matvecs, cycles = int(x.any()), 0
        while np.linalg.norm(r) > target and matvecs < self.max_matvecs:
            if recycled is not None:
                # The residual is made orthogonal to C; the removed part is solved exactly in X.
                coefficients = recycled.C.T @ r
                x += recycled.X @ coefficients
                r -= recycled.C @ coefficients
            k0 = recycled.X.shape[1] if recycled is not None else 0
            cycle = _Cycle(rhs.size, k0, self.m - k0)
            cycle.start(recycled, r)
            while cycle.j < cycle.steps and matvecs < self.max_matvecs:
                estimate = cycle.step(matrix, precondition, recycled)
                matvecs += 1
                if estimate <= 0.5 * target or cycle.unrotated[k0 + cycle.j, k0 + cycle.j - 1] == 0:
                    break
            x += cycle.update(recycled)
            if self.k > 0:
                recycled = _next_recycled(cycle, recycled, self.k) or recycled
            r = rhs - matrix @ x  # the true residual, not the recurrence: drift never hides
            matvecs += 1
            cycles += 1
        return x, recycled, cycles, matvecs


register_solver("gcrodr", GCRODR, takes_rtol=True)
