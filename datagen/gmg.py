r"""Geometric multigrid for cell-centred diffusion stencils: the fastest engine on 2-D and 3-D grids.

The engine reads the operator straight off the matrix: a square (cubic) grid of ``n^d``
cells (``d = 2, 3``), a ``(2d + 1)``-point stencil with symmetric face couplings
``T_f = -A_{pq} ≥ 0`` and a diagonal ``A_pp = Σ_f T_f + s_p``, where the remainder ``s``
holds the Dirichlet boundary faces and any zeroth-order term (``-k²`` for Helmholtz). Such
is every matrix of :func:`~nopx.datagen.stencil.diffusion_matrix`, with or without a shift.

Each coarser level halves every axis. Its operator is rediscretised from the fine one, not
formed as a Galerkin product: a coarse face couples like the mean of the ``2^{d-1}`` fine
faces it covers, at ``(h/H)² = 1/4`` (the coarse cells are twice as wide); a coarse
boundary face likewise; the zeroth-order term is averaged over the ``2^d`` fine cells. The
coarse operator is then again a ``(2d + 1)``-point stencil, so the setup costs a few array
passes per level (a Galerkin product over a smoothed aggregation is what the ``amg`` engine
pays per matrix). Corrections move between levels by cell-centred (bi/tri)linear
interpolation ``P`` (zero Dirichlet ghosts) and its adjoint ``R = Pᵀ / 2^d``.

The V-cycle smooths with one red-black Gauss–Seidel sweep before (red, then black) and one
after the coarse correction (black, then red: a symmetric cycle, so a valid CG
preconditioner), in float32 by default, and solves the coarsest level (at most
``max_coarse`` cells) by a banded ``L D Lᵀ`` factorisation.
Its kernels are compiled by numba and cached on disk after the first run. It accelerates
CG, for indefinite matrices too (Helmholtz, where ``-k²`` makes the matrix indefinite; the
coarse levels stop before the grid resolves the wave too poorly), with restarted GMRES
taking over where CG does not converge: on an M-matrix (non-negative couplings and
remainder: symmetric positive definite, Darcy) CG always does.

>>> from nopx.datagen.stencil import diffusion_matrix
>>> rng = np.random.default_rng(0)
>>> A = diffusion_matrix(np.exp(rng.standard_normal((32, 32))))
>>> [(x, stats)] = GMGSolver(rtol=1e-10).solve([(A, np.ones(1024))])
>>> stats.residual < 1e-10, stats.iterations < 25  # a rough field: contrasts of e³ between neighbours
(True, True)
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Iterable, Iterator
from typing import Literal

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from nopx.datagen.solvers import SolveStats, System, register_solver
from nopx.datagen.stencil import _along, diffusion_matrix

__all__ = ["Buffers", "GMGSolver", "StencilHierarchy", "StencilLevel", "StencilPattern", "gmres"]

#: A coarse level must keep at least this many cells per axis (its zeroth-order term is
#: read from cells off the boundary).
MIN_SIDE = 4
#: The most grid levels (a side of 2^15 cells and more would need more).
MAX_LEVELS = 16
#: The coarsest level of an indefinite operator keeps ``|s| ≤ RESOLVED · diagonal``: the
#: wave still spans several cells there, so the coarse correction stays a good one.
RESOLVED = 0.25
#: CG iterations an indefinite system gets before GMRES takes over (Helmholtz needs 8 to 15).
INDEFINITE_CG_LIMIT = 40


def _kernels():
    """The compiled kernels (:mod:`nopx.datagen.gmg_kernels`, imported on first use: numba costs a few tenths of a second)."""
    from nopx.datagen import gmg_kernels

    return gmg_kernels


class Buffers:
    """Arrays kept across the solves of a sequence, by name, shape and dtype: no fresh pages per system.

    A padded array's ghost cells are never written, so they stay zero.
    """

    def __init__(self) -> None:
        self._arrays: dict[tuple, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: np.dtype | type = np.float64) -> np.ndarray:
        key = (name, shape, np.dtype(dtype))
        if key not in self._arrays:
            self._arrays[key] = np.zeros(shape, dtype)
        return self._arrays[key]


class StencilLevel:
    """One grid level: ``diagonal`` ``(nx, ny, nz)`` and face couplings ``faces[a]`` (``n_a + 1`` along ``a``).

    ``faces[a][i]`` couples cells ``i - 1`` and ``i`` along axis ``a`` (zero at both walls).
    A 2-D grid is stored as ``(1, n, n)``.
    """

    def __init__(self, diagonal: np.ndarray, faces: list[np.ndarray], dtype: np.dtype) -> None:
        self.diagonal, self.faces = diagonal, faces
        self.shape = diagonal.shape
        self.remainder = diagonal - sum(t[_along(a, 3, slice(None, -1))] + t[_along(a, 3, slice(1, None))]
                                        for a, t in enumerate(faces))
        self.compiled = (np.ascontiguousarray(diagonal, dtype=dtype),
                         *(np.ascontiguousarray(t, dtype=dtype) for t in faces))
        self.inverse_diagonal = np.ascontiguousarray(1.0 / diagonal, dtype=dtype)

    @property
    def coarsened_axes(self) -> tuple[int, ...]:
        return tuple(a for a, n in enumerate(self.shape) if n > 1)

    def can_coarsen(self, max_coarse: int, definite: bool) -> bool:
        """Whether a coarser level fits: even sides of ``2 MIN_SIDE`` or more, more than ``max_coarse`` cells.

        An indefinite operator also stops where the coarse diagonal (about a quarter of this
        one) would no longer dominate the zeroth-order term ``s < 0`` by ``1 / RESOLVED``.
        """
        sides = [self.shape[a] for a in self.coarsened_axes]
        if self.diagonal.size <= max_coarse or any(n % 2 or n // 2 < MIN_SIDE for n in sides):
            return False
        return definite or bool((-4 * np.minimum(self.remainder, 0) <= RESOLVED * self.diagonal).all())

    def coarsen(self) -> StencilLevel:
        """The rediscretised operator on cells twice as wide along every non-singleton axis."""
        diagonal, *faces = _kernels().coarsen(self.diagonal, self.remainder, *self.faces)
        return StencilLevel(diagonal, faces, self.compiled[0].dtype)


class StencilPattern:
    """Where the matrices of one sparsity structure keep their stencil entries.

    The matrix (CSR or CSC, no duplicate entries) must hold exactly the ``(2d + 1)``-point
    stencil of a square or cubic grid in row-major order: nothing off the bands, no
    wrap-around (periodic) entries; :meth:`of` returns ``None`` otherwise. Reading a matrix
    of the same structure (:meth:`matches`) is then one gather, without the search.
    """

    def __init__(self, matrix: sp.csr_matrix | sp.csc_matrix, n: int, ndim: int, slots: np.ndarray) -> None:
        self.format, self.indptr, self.indices = matrix.format, matrix.indptr, matrix.indices
        self.shape = (1,) * (3 - ndim) + (n,) * ndim
        self.ndim, self.slots = ndim, slots

    @classmethod
    def of(cls, matrix: sp.csr_matrix | sp.csc_matrix) -> StencilPattern | None:
        size = matrix.shape[0]
        for ndim in (2, 3):
            n = round(size ** (1 / ndim))
            if n < 2 or n**ndim != size or matrix.shape[1] != size:
                continue
            slots = np.full((2 * ndim + 1, size), -1, dtype=np.int64)
            if _kernels().stencil_slots(matrix.indptr, matrix.indices, n, ndim, slots):
                return cls(matrix, n, ndim, slots)
        return None

    def matches(self, matrix: sp.csr_matrix | sp.csc_matrix) -> bool:
        """Whether ``matrix`` has this structure (the same index arrays, or equal ones)."""
        if matrix.format != self.format:
            return False
        same = matrix.indices is self.indices and matrix.indptr is self.indptr
        return same or (np.array_equal(matrix.indptr, self.indptr) and np.array_equal(matrix.indices, self.indices))

    def read(self, matrix: sp.csr_matrix | sp.csc_matrix) -> tuple[np.ndarray, list[np.ndarray]] | None:
        """``(diagonal, faces)`` of :class:`StencilLevel`; ``None`` if the couplings are not symmetric."""
        values = np.empty(self.slots.shape)
        _kernels().gather(matrix.data, self.slots, values)
        forward, backward = values[1:1 + self.ndim], values[1 + self.ndim:]
        if not np.array_equal(forward, backward):
            return None
        faces = []
        for a in range(3):
            padded = list(self.shape)
            padded[a] += 1
            t = np.zeros(padded)
            if self.shape[a] > 1:  # forward[b] couples p to p + s_b: the face after p along axis b
                coupling = -forward[a - (3 - self.ndim)].reshape(self.shape)
                t[_along(a, 3, slice(1, -1))] = coupling[_along(a, 3, slice(None, -1))]
            faces.append(t)
        return values[0].reshape(self.shape), faces


class StencilHierarchy:
    """The levels of one matrix and the V-cycle over them; ``hierarchy @ x`` applies the matrix.

    Args:
      matrix: a stencil matrix (see the module docstring); ``ValueError`` otherwise.
      max_coarse: the coarsest level has at most this many cells where the grid allows.
      dtype: the V-cycle's precision.
    """

    def __init__(self, matrix: sp.spmatrix | sp.sparray, *, max_coarse: int = 512, dtype: str = "float32",
                 pattern: StencilPattern | None = None, buffers: Buffers | None = None) -> None:
        if matrix.format not in ("csr", "csc") or not matrix.has_canonical_format:
            matrix = sp.csr_matrix(matrix)
            matrix.sum_duplicates()
        if pattern is None or not pattern.matches(matrix):
            pattern = StencilPattern.of(matrix)
        #: The structure read, for the next matrix of a sequence to reuse.
        self.pattern = pattern
        stencil = None if pattern is None else pattern.read(matrix)
        if stencil is None:
            raise ValueError(f"gmg: the {matrix.shape[0]}x{matrix.shape[1]} matrix is not a symmetric 5- or 7-point "
                             "stencil on a square or cubic grid; use solver.method amg, pardiso or direct")
        level = StencilLevel(*stencil, np.dtype(dtype))
        diagonal_scale = level.diagonal.max()
        #: An M-matrix (symmetric positive definite): CG converges; otherwise it may stall and GMRES takes over.
        self.definite = bool(all((t >= 0).all() for t in level.faces)
                             and (level.remainder >= -1e-10 * diagonal_scale).all())
        self.levels = [level]
        while level.can_coarsen(max_coarse, self.definite):
            level = level.coarsen()
            self.levels.append(level)
        self.dtype = np.dtype(dtype)
        #: Work arrays, shared with the other hierarchies of a sequence.
        self.buffers = Buffers() if buffers is None else buffers
        nx, ny, nz = level.shape
        #: The coarsest level's banded ``L D Lᵀ`` (see :func:`~nopx.datagen.gmg_kernels.band_factor`).
        self.band = self.buffers.get("band", (level.diagonal.size, 1 + (ny * nz if nx > 1 else nz)))
        #: How many of its pivots were raised to the floor (an indefinite coarsest level only).
        self.raised_pivots = _kernels().band_factor(level.diagonal, *level.faces, self.band)

    def vcycle(self, b: np.ndarray) -> np.ndarray:
        """One V-cycle for ``A x = b`` from ``x = 0``: ``b`` float64, flat or grid-shaped → ``x`` float64, same shape.

        On a grid too small to coarsen the cycle is the banded solve alone.
        """
        return self._padded_vcycle(b)[1:-1, 1:-1, 1:-1].astype(np.float64).reshape(b.shape)

    def _padded_vcycle(self, b: np.ndarray) -> np.ndarray:
        """The V-cycle's result in its padded working array (the cycle's precision; valid until the next cycle)."""
        us, fs = self._cycle_arrays
        fs[0][:] = b.reshape(fs[0].shape)
        self._cycle(0, keep=False)
        return us[0]

    def _cycle(self, start: int, *, keep: bool) -> None:
        """A V-cycle on level ``start`` for its ``f``, from ``u = 0`` or (``keep``) from its ``u``: one compiled call."""
        _kernels().vcycle(*self._cycle_arrays, *self._cycle_operators, self.band, start, len(self.levels) - 1, keep)

    def full_multigrid(self, b: np.ndarray) -> np.ndarray:
        """A first guess for ``A x = b`` by full multigrid: ``b`` restricted to every level, solved on
        the coarsest, then level by level up, the interpolated coarser solution improved by one
        V-cycle. Float64, ``b``'s shape; it saves CG two to three of its iterations (Darcy 256²).
        """
        kernels, (us, fs) = _kernels(), self._cycle_arrays
        coarsest = len(self.levels) - 1
        fs[0][:] = b.reshape(fs[0].shape)
        kernels.restrict_all(fs, coarsest)
        kernels.band_solve(self.band, fs[coarsest], us[coarsest])
        for level in range(coarsest - 1, -1, -1):
            kernels.interpolate(us[level + 1], us[level])
            self._cycle(level, keep=True)
        return us[0][1:-1, 1:-1, 1:-1].astype(np.float64).reshape(b.shape)

    @functools.cached_property
    def _cycle_arrays(self) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        """Every level's padded iterate ``u`` and right-hand side ``f`` (kept in :attr:`buffers`), padded to
        :data:`MAX_LEVELS` so that one compiled kernel serves every depth."""
        us = tuple(self.buffers.get(f"u{depth}", tuple(n + 2 for n in level.shape), self.dtype)
                   for depth, level in enumerate(self.levels))
        fs = tuple(self.buffers.get(f"f{depth}", level.shape, self.dtype) for depth, level in enumerate(self.levels))
        return self._padded(us), self._padded(fs)

    @functools.cached_property
    def _cycle_operators(self) -> tuple[tuple[np.ndarray, ...], ...]:
        """Residuals, diagonals, inverse diagonals and faces of every level but the coarsest."""
        smoothed = self.levels[:-1]
        return tuple(map(self._padded, (
            tuple(self.buffers.get(f"r{depth}", level.shape, self.dtype) for depth, level in enumerate(smoothed)),
            tuple(level.compiled[0] for level in smoothed),
            tuple(level.inverse_diagonal for level in smoothed),
            *(tuple(level.compiled[1 + a] for level in smoothed) for a in range(3)))))

    def _padded(self, arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        return arrays + (np.zeros((1, 1, 1), self.dtype),) * (MAX_LEVELS - len(arrays))

    def __matmul__(self, x: np.ndarray) -> np.ndarray:
        """``A x`` by the finest level's stencil (float64), ``x`` ``(N,)``."""
        level = self.levels[0]
        padded = np.zeros(tuple(n + 2 for n in level.shape))
        padded[1:-1, 1:-1, 1:-1] = x.reshape(level.shape)
        out = np.empty(level.shape)
        _kernels().apply(padded, out, level.diagonal, *level.faces)
        return out.ravel()

    def cg(self, b: np.ndarray, *, rtol: float, maxiter: int) -> tuple[np.ndarray, int, int, bool]:
        """V-cycle-preconditioned CG until ``‖b - A x‖ ≤ rtol ‖b‖``: ``(x, iterations, mat-vecs, converged)``, ``b`` ``(N,)``.

        It starts from :meth:`full_multigrid`'s guess. Fused compiled loops for ``A p`` with
        ``p·Ap``, and for the updates of ``x`` and ``r`` with ``r·r``. A recurrence residual
        under the target is confirmed by the true one; a drifted recurrence restarts from it.
        On an indefinite matrix CG has no guarantee (``p·Ap`` may vanish): a step that is
        not finite ends it unconverged, as does ``maxiter``.
        """
        kernels = _kernels()
        level = self.levels[0]
        operator = (level.diagonal, *level.faces)
        b = b.reshape(level.shape)
        padded = tuple(n + 2 for n in level.shape)
        x, p = self.buffers.get("x", padded), self.buffers.get("p", padded)
        x[1:-1, 1:-1, 1:-1] = self.full_multigrid(b)
        q = self.buffers.get("q", level.shape)
        target = (rtol * np.linalg.norm(b)) ** 2
        iterations = matvecs = 0
        while True:
            kernels.apply(x, q, *operator)
            r, matvecs = b - q, matvecs + 1
            converged = np.vdot(r, r) <= target
            if converged or iterations >= maxiter:
                return x[1:-1, 1:-1, 1:-1].ravel(), iterations, matvecs, bool(converged)
            rz = kernels.direction_from(p, self._padded_vcycle(r), r, 0.0)
            while iterations < maxiter:
                alpha = rz / kernels.apply(p, q, *operator)
                matvecs += 1
                iterations += 1
                if not np.isfinite(alpha):
                    return x[1:-1, 1:-1, 1:-1].ravel(), iterations, matvecs, False
                if kernels.step(x, r, p, q, alpha) <= target:
                    break
                rz = kernels.direction_from(p, self._padded_vcycle(r), r, rz)


def gmres(matrix, b: np.ndarray, precondition, *, rtol: float, restart: int = 20, maxiter: int = 400,
          workspace: np.ndarray | None = None, x0: np.ndarray | None = None) -> tuple[np.ndarray, int, int]:
    """Right-preconditioned restarted GMRES until ``‖b - A x‖ ≤ rtol ‖b‖``: ``(x, iterations, mat-vecs)``.

    Right preconditioning keeps the Arnoldi residual equal to the true one (up to rounding);
    each restart recomputes the true residual and stops on it. The basis is orthogonalised
    by classical Gram–Schmidt (two matrix-vector products over the whole basis), repeated
    once where a vector lost most of its norm to it ("twice is enough"); Givens rotations
    keep the residual norm current. ``workspace`` ``(2 restart + 1, N)``, if given, holds the
    basis and the preconditioned directions (a sequence of solves reuses it); ``x0`` is the
    first guess (default zero).

    >>> A = sp.diags([[2.0, -1.0, 3.0, -4.0]], [0])
    >>> x, iterations, _ = gmres(A, np.ones(4), lambda r: r, rtol=1e-12)
    >>> np.allclose(A @ x, 1), iterations
    (True, 4)
    """
    x = np.zeros_like(b) if x0 is None else x0.copy()
    target = rtol * np.linalg.norm(b)
    if workspace is None or workspace.shape != (2 * restart + 1, b.size):
        workspace = np.empty((2 * restart + 1, b.size))
    basis, directions = workspace[: restart + 1], workspace[restart + 1:]
    iterations = matvecs = 0
    while iterations < maxiter:
        r = b - matrix @ x
        matvecs += 1
        beta = np.linalg.norm(r)
        if beta <= target:
            break
        hessenberg, cosines, sines = np.zeros((restart + 1, restart)), np.zeros(restart), np.zeros(restart)
        residual = np.zeros(restart + 1)  # the rotated right-hand side beta e_1
        residual[0] = beta
        basis[0] = r / beta
        for j in range(restart):
            directions[j] = precondition(basis[j])
            w = matrix @ directions[j]
            matvecs += 1
            iterations += 1
            norm = np.linalg.norm(w)
            for _ in range(2):
                coefficients = basis[: j + 1] @ w
                w -= coefficients @ basis[: j + 1]
                hessenberg[: j + 1, j] += coefficients
                norm, before = np.linalg.norm(w), norm
                if norm > 0.7 * before:
                    break
            hessenberg[j + 1, j] = norm
            for i in range(j):  # the earlier rotations, then a new one zeroing h[j+1, j]
                upper, lower = hessenberg[i, j], hessenberg[i + 1, j]
                hessenberg[i, j] = cosines[i] * upper + sines[i] * lower
                hessenberg[i + 1, j] = cosines[i] * lower - sines[i] * upper
            radius = np.hypot(hessenberg[j, j], norm)
            cosines[j], sines[j] = hessenberg[j, j] / radius, norm / radius
            hessenberg[j, j] = radius
            residual[j + 1], residual[j] = -sines[j] * residual[j], cosines[j] * residual[j]
            if abs(residual[j + 1]) <= target or norm == 0 or iterations >= maxiter or j == restart - 1:
                break
            basis[j + 1] = w / norm
        y = scipy.linalg.solve_triangular(hessenberg[: j + 1, : j + 1], residual[: j + 1])
        x += y @ directions[: j + 1]
    return x, iterations, matvecs


@dataclasses.dataclass(frozen=True)
class GMGSolver:
    """Krylov accelerated by a geometric V-cycle built from each matrix's stencil.

    Args:
      rtol: the true relative residual to reach (a recipe passes ``solver.rtol``).
      max_coarse: cells of the coarsest level (a direct banded solve), where the grid allows.
      precision: ``float32`` or ``float64`` V-cycle (CG or GMRES stay float64).
      restart: GMRES restart length (for an indefinite system on which CG stalls).
      maxiter: iteration cap per system.
    """

    rtol: float = 1e-8
    max_coarse: int = 512
    precision: Literal["float32", "float64"] = "float32"
    restart: int = 20
    maxiter: int = 400

    def __post_init__(self) -> None:
        if self.precision not in ("float32", "float64"):
            raise ValueError(f"precision: float32 or float64, got {self.precision!r}")
        if self.max_coarse < 1 or self.restart < 1 or self.maxiter < 1:
            raise ValueError("max_coarse, restart and maxiter: need at least 1")

    def warm_up(self, system: System | None = None) -> None:
        """Load the compiled kernels (about 0.3 s the first time in a process) by solving ``system``.

        One compiled cycle serves every grid depth, so any system loads them (default: a 64²
        Poisson problem); a system of the sequence to come also loads its precision's.
        """
        for _ in self.solve([system or (diffusion_matrix(np.ones((64, 64))), np.ones(4096))]):
            pass

    def solve(self, systems: Iterable[System]) -> Iterator[tuple[np.ndarray, SolveStats]]:
        pattern, buffers = None, Buffers()
        for matrix, rhs in systems:
            start = time.perf_counter()
            hierarchy = StencilHierarchy(matrix, max_coarse=self.max_coarse, dtype=self.precision, pattern=pattern,
                                         buffers=buffers)
            pattern = hierarchy.pattern
            # CG first, indefinite matrices too: with the symmetric V-cycle it converged on every
            # Helmholtz system tried (and skips GMRES's orthogonalisation); GMRES takes over
            # from its iterate where it does not.
            x, iterations, matvecs, converged = hierarchy.cg(
                rhs, rtol=self.rtol, maxiter=self.maxiter if hierarchy.definite else INDEFINITE_CG_LIMIT)
            if not converged and not hierarchy.definite:
                workspace = buffers.get("gmres", (2 * self.restart + 1, rhs.size))
                guess = x if np.isfinite(x).all() and np.linalg.norm(rhs - hierarchy @ x) < np.linalg.norm(rhs) else None
                x, more, extra = gmres(hierarchy, rhs, hierarchy.vcycle, rtol=self.rtol, restart=self.restart,
                                       maxiter=self.maxiter, workspace=workspace, x0=guess)
                iterations, matvecs = iterations + more, matvecs + extra
            yield x, SolveStats.measure(matrix, x, rhs, start=start, iterations=iterations, matvecs=matvecs)


register_solver("gmg", GMGSolver, takes_rtol=True)
