"""MKL PARDISO with its symbolic analysis reused across a sequence of matrices with one pattern.

A sparse direct solve is analysis (fill-reducing nested-dissection ordering and symbolic
factorisation), numerical factorisation, and triangular solves. Every sample of a family on
a fixed grid has the same sparsity pattern, and on 2-D Darcy at 65k unknowns the analysis
is about three quarters of PARDISO's time: this engine analyses once per sequence and then
only refactors (PARDISO phase 23), or only solves (phase 33) while the matrix itself is
unchanged (fixed-matrix families, implicit time steps). Symmetric matrices use the
Cholesky path (``mtype 2``) and fall back to symmetric-indefinite ``LDLᵀ`` (``-2``) when a
pivot is not positive, e.g. Helmholtz; others use ``LU`` (``11``). PARDISO's pivot
perturbation plus iterative refinement keeps the reused analysis exact in practice, and the
runner checks every true residual regardless.

Needs ``pypardiso`` (it brings the ``mkl`` wheel; no system library). The binding is this
module's own ``ctypes`` call of ``pardiso`` on the wheel's ``libmkl_rt``.

>>> from nopx.datagen.stencil import diffusion_matrix
>>> A = diffusion_matrix(np.ones((8, 8)))
>>> [(x, stats)] = PardisoSolver().solve([(A, np.ones(64))])  # doctest: +SKIP
>>> stats.residual < 1e-12  # doctest: +SKIP
True
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import importlib.metadata
import importlib.util
import os
import time
from collections.abc import Iterable, Iterator
from typing import Literal

import numpy as np
import scipy.sparse as sp

from nopx.datagen.solvers import SolveStats, System, register_solver, same_matrix

__all__ = ["PardisoSolver", "mkl_runtime_path", "pardiso_available"]

_SPD, _SYMMETRIC_INDEFINITE, _GENERAL = 2, -2, 11
_NOT_POSITIVE_DEFINITE = -4


def pardiso_available() -> bool:
    """Whether ``pypardiso`` (hence MKL) is importable."""
    try:
        _library()
    except (ImportError, OSError):
        return False
    return True


def mkl_runtime_path() -> str | None:
    """``libmkl_rt`` as the ``mkl`` wheel installed it (``PYPARDISO_MKL_RT`` first), or None.

    pypardiso's own lookup walks the whole of ``sys.prefix`` with a recursive glob: 1.7 s per
    process here, paid again by every datagen worker; the wheel's file list answers in ms.
    """
    if path := os.environ.get("PYPARDISO_MKL_RT"):
        return path
    try:
        files = importlib.metadata.files("mkl") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = sorted(str(f.locate()) for f in files if f.name.startswith("libmkl_rt"))
    return found[0] if found else None


@functools.cache
def _library() -> ctypes.CDLL:
    path = mkl_runtime_path()
    if path is not None:
        library = ctypes.CDLL(path)
    else:
        import pypardiso  # its own search for the MKL runtime

        library = pypardiso.PyPardisoSolver().libmkl
    pointer = ctypes.POINTER
    library.pardiso.argtypes = [
        pointer(ctypes.c_int64), pointer(ctypes.c_int32), pointer(ctypes.c_int32), pointer(ctypes.c_int32),
        pointer(ctypes.c_int32), pointer(ctypes.c_int32), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.c_void_p, pointer(ctypes.c_int32), ctypes.c_void_p, pointer(ctypes.c_int32), ctypes.c_void_p,
        ctypes.c_void_p, pointer(ctypes.c_int32)]
    library.pardiso.restype = None
    return library


class _Handle:
    """One PARDISO instance: its internal pointer array, parameters and the analysed pattern."""

    def __init__(self, mtype: int) -> None:
        self.mtype = mtype
        self.pt = np.zeros(64, dtype=np.int64)
        self.iparm = np.zeros(64, dtype=np.int32)
        self.iparm[0] = 1  # use the values below, defaults elsewhere
        self.iparm[1] = 2  # nested dissection (METIS) ordering
        self.iparm[7] = 2  # up to two steps of iterative refinement after perturbed pivots
        self.iparm[9] = 13 if mtype == _GENERAL else 8  # pivot perturbation 1e-13 / 1e-8
        self.iparm[10] = self.iparm[12] = int(mtype == _GENERAL)  # scaling + matching for LU only
        self.iparm[34] = 1  # zero-based indices
        self.pattern: tuple[np.ndarray, np.ndarray] | None = None

    def call(self, phase: int, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
             rhs: np.ndarray) -> tuple[np.ndarray, int]:
        x = np.zeros_like(rhs)
        error = ctypes.c_int32(0)
        one = ctypes.c_int32(1)
        _library().pardiso(
            self.pt.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)), ctypes.byref(one), ctypes.byref(one),
            ctypes.byref(ctypes.c_int32(self.mtype)), ctypes.byref(ctypes.c_int32(phase)),
            ctypes.byref(ctypes.c_int32(rhs.size)), data.ctypes.data, indptr.ctypes.data, indices.ctypes.data,
            None, ctypes.byref(one), self.iparm.ctypes.data, ctypes.byref(ctypes.c_int32(0)),
            rhs.ctypes.data, x.ctypes.data, ctypes.byref(error))
        return x, error.value

    def release(self) -> None:
        if self.pattern is not None:
            empty = np.zeros(1, dtype=np.int32)
            self.call(-1, empty, empty, np.zeros(1), np.zeros(1))
            self.pattern = None


def _csr_arrays(matrix, symmetric: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indptr, indices, data)`` int32/float64 with sorted indices; the upper triangle when ``symmetric``."""
    matrix = sp.csr_matrix(sp.triu(matrix) if symmetric else matrix)
    matrix.sort_indices()
    return matrix.indptr.astype(np.int32), matrix.indices.astype(np.int32), matrix.data.astype(np.float64)


def _is_symmetric(matrix) -> bool:
    return abs(matrix - matrix.T).max() == 0


@dataclasses.dataclass(frozen=True)
class PardisoSolver:
    """PARDISO per system, analysing once per sequence and factoring once per distinct matrix.

    Args:
      matrix_type: ``auto`` (symmetric → Cholesky, falling back to ``LDLᵀ``; else ``LU``),
        ``spd``, ``symmetric`` (indefinite ``LDLᵀ``) or ``general``.
      threads: MKL threads for this process (1 when several workers share the cores).
      reuse_analysis: analyse once per sequence while the pattern is unchanged (off: every
        new matrix is analysed again, plain PARDISO).
    """

    matrix_type: Literal["auto", "spd", "symmetric", "general"] = "auto"
    threads: int = 1
    reuse_analysis: bool = True
    # matrix shape -> LDLᵀ, once Cholesky failed on a sequence of that shape in this process
    _indefinite: set[tuple[int, ...]] = dataclasses.field(default_factory=set, init=False,
                                                          repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.matrix_type not in ("auto", "spd", "symmetric", "general"):
            raise ValueError(f"matrix_type: one of auto, spd, symmetric, general; got {self.matrix_type!r}")
        if self.threads < 1:
            raise ValueError(f"threads: need at least 1, got {self.threads}")
        try:
            _library()
        except (ImportError, OSError) as err:
            raise ValueError(f"pypardiso is installed but MKL PARDISO does not load ({err}); "
                             "choose another solver.method") from None

    def _mtype(self, matrix) -> int:
        if self.matrix_type == "auto":
            if matrix.shape in self._indefinite:
                return _SYMMETRIC_INDEFINITE
            return _SPD if _is_symmetric(matrix) else _GENERAL
        return {"spd": _SPD, "symmetric": _SYMMETRIC_INDEFINITE, "general": _GENERAL}[self.matrix_type]

    def solve(self, systems: Iterable[System]) -> Iterator[tuple[np.ndarray, SolveStats]]:
        _library().MKL_Set_Num_Threads_Local(ctypes.c_int(self.threads))
        handle, factored = None, None
        try:
            for matrix, rhs in systems:
                start = time.perf_counter()
                rhs = np.ascontiguousarray(rhs, dtype=np.float64)
                if same_matrix(factored, matrix):
                    x, error = handle.call(33, *handle.arrays, rhs)
                else:
                    if handle is None:
                        handle = _Handle(self._mtype(matrix))
                    x, error, handle = self._factor_and_solve(handle, matrix, rhs)
                    factored = matrix if error == 0 else None
                if error != 0:
                    x = np.full_like(rhs, np.nan)  # the runner sees an infinite residual and retries
                yield x, SolveStats.measure(matrix, x, rhs, start=start)
        finally:
            if handle is not None:
                handle.release()

    def _factor_and_solve(self, handle: _Handle, matrix, rhs: np.ndarray) -> tuple[np.ndarray, int, _Handle]:
        arrays = _csr_arrays(matrix, symmetric=handle.mtype != _GENERAL)
        pattern = arrays[:2]
        reuse = (self.reuse_analysis and handle.pattern is not None
                 and all(np.array_equal(a, b) for a, b in zip(pattern, handle.pattern, strict=True)))
        if not reuse:
            handle.release()
        x, error = handle.call(23 if reuse else 13, *arrays, rhs)
        handle.pattern = pattern
        handle.arrays = arrays
        if error == _NOT_POSITIVE_DEFINITE and handle.mtype == _SPD and self.matrix_type == "auto":
            # Symmetric but indefinite (Helmholtz): LDLᵀ from now on, for later sequences too.
            self._indefinite.add(matrix.shape)
            handle.release()
            handle = _Handle(_SYMMETRIC_INDEFINITE)
            return self._factor_and_solve(handle, matrix, rhs)
        return x, error, handle


# Registered where pypardiso is installed, without importing it (loading MKL takes a second).
if importlib.util.find_spec("pypardiso") is not None:
    register_solver("pardiso", PardisoSolver)
