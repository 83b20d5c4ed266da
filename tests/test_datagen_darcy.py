"""Darcy family and the 5-point finite-volume stencil: structure, convergence, fields."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from nopx.datagen import CellGrid, Darcy2D, DarcyConfig
from nopx.datagen.grid import cell_centres
from nopx.datagen.stencil import diffusion_matrix


def _manufactured(n):
    """u = sin(πx) sin(πy), a = 1 + x² + y, f = -∇·(a∇u); returns the max error at the centres."""
    x, y = np.meshgrid(cell_centres(n), cell_centres(n), indexing="ij")
    pi = np.pi
    u = np.sin(pi * x) * np.sin(pi * y)
    a = 1 + x**2 + y
    f = -(2 * x * pi * np.cos(pi * x) * np.sin(pi * y) + pi * np.sin(pi * x) * np.cos(pi * y)) + 2 * pi**2 * a * u
    solution = spla.spsolve(diffusion_matrix(a), f.ravel()).reshape(n, n)
    return np.abs(solution - u).max()


def test_second_order_convergence():
    errors = [_manufactured(n) for n in (16, 32, 64)]
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 3.6) & (ratios < 4.4)), (errors, ratios)


def test_matrix_is_symmetric_positive_definite():
    rng = np.random.default_rng(0)
    a = np.exp(rng.standard_normal((6, 6)))
    dense = diffusion_matrix(a).toarray()
    np.testing.assert_allclose(dense, dense.T, rtol=0, atol=0)
    assert np.linalg.eigvalsh(dense).min() > 0


def test_constant_coefficient_stencil_row():
    n = 8
    dense = diffusion_matrix(np.full((n, n), 2.0)).toarray() / n**2
    interior = 3 * n + 4
    row = dense[interior]
    assert row[interior] == 8.0
    assert sorted(row[[interior - 1, interior + 1, interior - n, interior + n]]) == [-2.0] * 4
    # A corner cell has two boundary faces at distance h/2: 2·(2a) + 2·a = 12 for a = 2.
    assert dense[0, 0] == 12.0
    assert np.count_nonzero(dense[0]) == 3


def test_piecewise_constant_problem():
    darcy = Darcy2D(DarcyConfig(high=10.0, low=2.0, source=3.0, modes=8), grid=CellGrid(n=32, ndim=2), seed=1)
    problem = darcy.problem(5)
    a = problem.inputs["a"]
    assert set(np.unique(a)) == {2.0, 10.0}
    assert 0.2 < (a == 10.0).mean() < 0.8
    np.testing.assert_array_equal(problem.rhs, 3.0)
    assert problem.params.shape == (darcy.n_params,) == (64,)
    x = spla.spsolve(problem.matrix, problem.rhs)
    fields = darcy.fields_of(problem, x)
    assert list(fields) == list(Darcy2D.fields)
    assert fields["u"].shape == (32, 32) and fields["u"].min() > 0


def test_lognormal_coefficient_is_exp_of_the_grf():
    darcy = Darcy2D(DarcyConfig(coefficient="lognormal"), grid=CellGrid(n=16, ndim=2), seed=0)
    xi = darcy.grf.coefficients(0, 2)
    np.testing.assert_allclose(darcy.coefficient(xi), np.exp(darcy.grf.synthesize(xi, 16)))


def test_coefficient_is_resolution_independent():
    config = DarcyConfig()
    coarse = Darcy2D(config, grid=CellGrid(n=20, ndim=2), seed=3).problem(9).inputs["a"]
    fine = Darcy2D(config, grid=CellGrid(n=60, ndim=2), seed=3).problem(9).inputs["a"]
    np.testing.assert_array_equal(coarse, fine[1::3, 1::3])


@pytest.mark.parametrize(
    "bad", [{"alpha": 1.0}, {"tau": 0.0}, {"modes": 1}, {"low": 0.0}, {"high": -1.0}, {"source": 0.0}])
def test_config_rejects_impossible_values(bad):
    with pytest.raises(ValueError, match=f"^{next(iter(bad))}: "):
        DarcyConfig(**bad)
