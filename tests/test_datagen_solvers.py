"""Solver engines: agreement with a dense solve, honest residuals, the registry."""

import numpy as np
import pytest
import scipy.sparse as sp

from nopx.datagen import CellGrid, Darcy2D, DarcyConfig
from nopx.datagen.solvers import DirectSolver, SolveStats, available_solvers, build_solver, relative_residual


def _systems(count, n=12):
    darcy = Darcy2D(DarcyConfig(modes=8), grid=CellGrid(n=n, ndim=2), seed=0)
    return [(p.matrix, p.rhs) for p in map(darcy.problem, range(count))]


def test_direct_agrees_with_dense_solve():
    systems = _systems(3)
    results = build_solver("direct").solve(systems)
    assert len(results) == 3
    for (matrix, rhs), (x, stats) in zip(systems, results, strict=True):
        expected = np.linalg.solve(matrix.toarray(), rhs)
        np.testing.assert_allclose(x, expected, rtol=1e-10, atol=0)
        assert isinstance(stats, SolveStats)
        assert stats.iterations == 0 and stats.matvecs == 0 and stats.seconds > 0
        assert stats.residual == pytest.approx(relative_residual(matrix, x, rhs)) and stats.residual < 1e-12


def test_direct_accepts_any_sparse_format_and_ordering():
    [(matrix, rhs)] = _systems(1)
    [(x_csr, _)] = DirectSolver(permc_spec="COLAMD").solve([(sp.csr_array(matrix), rhs)])
    [(x_csc, _)] = DirectSolver().solve([(matrix, rhs)])
    np.testing.assert_allclose(x_csr, x_csc, rtol=1e-12)


def test_residual_is_the_true_residual():
    matrix = sp.diags([2.0, 4.0]).tocsc()
    assert relative_residual(matrix, np.array([0.5, 0.0]), np.array([1.0, 1.0])) == pytest.approx(np.sqrt(0.5))
    assert relative_residual(matrix, np.zeros(2), np.zeros(2)) == 0.0


def test_registry():
    assert "direct" in available_solvers()
    with pytest.raises(ValueError, match="^method: unknown solver 'drect'; did you mean 'direct'"):
        build_solver("drect")
    with pytest.raises(TypeError):
        build_solver("direct", no_such_option=1)
