"""Preconditioners for the Krylov engines, built per matrix by name.

``none`` (identity), ``jacobi`` (the inverse diagonal), ``ilu`` (SuperLU's incomplete LU,
``drop_tol=1e-4``, ``fill_factor=10``, MMD ordering: nearly a full LU on 2-D stencils, the
baseline of the reference measurement) and ``amg`` (one smoothed-aggregation V-cycle of
``pyamg``, for SPD matrices). Each returns an operator applying ``M⁻¹ ≈ A⁻¹``.

>>> import scipy.sparse as sp
>>> M = build_preconditioner("jacobi", sp.diags([2.0, 4.0]).tocsr())
>>> M @ np.array([2.0, 2.0])
array([1. , 0.5])
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__ = ["build_preconditioner", "PRECONDITIONERS"]

Matrix = sp.spmatrix | sp.sparray


def _none(matrix: Matrix) -> spla.LinearOperator:
    return spla.aslinearoperator(sp.identity(matrix.shape[0], format="csr"))


def _jacobi(matrix: Matrix) -> spla.LinearOperator:
    inverse = 1.0 / matrix.diagonal()
    return spla.LinearOperator(matrix.shape, matvec=lambda v: inverse * v.ravel(), dtype=np.float64)


def _ilu(matrix: Matrix) -> spla.LinearOperator:
    ilu = spla.spilu(matrix.tocsc(), drop_tol=1e-4, fill_factor=10, permc_spec="MMD_AT_PLUS_A")
    return spla.LinearOperator(matrix.shape, matvec=ilu.solve, dtype=np.float64)


def _amg(matrix: Matrix) -> spla.LinearOperator:
    import pyamg  # a runtime dependency, imported late to keep `import nopx.datagen` light

    return pyamg.smoothed_aggregation_solver(sp.csr_matrix(matrix)).aspreconditioner(cycle="V")


PRECONDITIONERS: dict[str, Callable[[Matrix], spla.LinearOperator]] = {
    "none": _none, "jacobi": _jacobi, "ilu": _ilu, "amg": _amg}


def build_preconditioner(name: str, matrix: Matrix) -> spla.LinearOperator:
    """The preconditioner ``name`` (one of :data:`PRECONDITIONERS`) for ``matrix``."""
    if name not in PRECONDITIONERS:
        raise ValueError(f"preconditioner: unknown {name!r} (available: {', '.join(PRECONDITIONERS)})")
    return PRECONDITIONERS[name](matrix)
