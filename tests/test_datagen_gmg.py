"""The geometric multigrid engine: exact coarse operators, adjoint transfers, a symmetric cycle, direct-solve answers."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import nopx.datagen as dg
from nopx.datagen import gmg, gmg_kernels
from nopx.datagen.gmg import GMGSolver, StencilHierarchy, StencilLevel, StencilPattern
from nopx.datagen.stencil import diffusion_matrix


def _level(matrix):
    pattern = StencilPattern.of(sp.csc_matrix(matrix))
    return StencilLevel(*pattern.read(sp.csc_matrix(matrix)), np.dtype(np.float64))


def _problems(family, n, count=3, **config):
    cls = dg.family_class(family)
    instance = cls(cls.config_type(**config), grid=dg.CellGrid(n=n, ndim=cls.ndim), seed=0)
    return [instance.problem(i) for i in range(count)]


@pytest.mark.parametrize("shape, shift", [((16, 16), 0.0), ((8, 8, 8), 0.0), ((16, 16), 40.0)])
def test_a_constant_coefficient_coarsens_to_the_coarse_grid_discretisation(shape, shift):
    """Faces, boundary faces and the -k² term of the coarse level are those of the grid twice as coarse."""
    fine = _level(diffusion_matrix(np.full(shape, 2.5), shift=shift))
    coarse = _level(diffusion_matrix(np.full(tuple(n // 2 for n in shape), 2.5), shift=shift))
    got = fine.coarsen()
    np.testing.assert_allclose(got.diagonal, coarse.diagonal, rtol=1e-12)
    for a in range(3):
        np.testing.assert_allclose(got.faces[a], coarse.faces[a], rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("shape", [(1, 16, 8), (8, 4, 16)])
def test_restriction_is_the_scaled_adjoint_of_interpolation(shape):
    """<R f, c> = <f, P c> / 2^d: the V-cycle stays symmetric."""
    rng = np.random.default_rng(0)
    f = rng.standard_normal(shape)
    coarse_shape = tuple(n // 2 if n > 1 else 1 for n in shape)
    c = np.zeros(tuple(n + 2 for n in coarse_shape))
    c[1:-1, 1:-1, 1:-1] = rng.standard_normal(coarse_shape)
    interpolated = np.zeros(tuple(n + 2 for n in shape))
    gmg_kernels.prolong_add(c, interpolated)
    halved = sum(n > 1 for n in shape)
    inner = c[1:-1, 1:-1, 1:-1]
    restricted = np.empty(coarse_shape)
    gmg_kernels.restrict(f, restricted)
    assert np.vdot(restricted, inner) == pytest.approx(np.vdot(f, interpolated[1:-1, 1:-1, 1:-1]) / 2**halved)
    # Interpolation reproduces a linear function inside the domain (second-order transfer).
    line = np.zeros_like(c)
    line[1:-1, 1:-1, 1:-1] = np.arange(coarse_shape[-1], dtype=float)
    fine = np.zeros(tuple(n + 2 for n in shape))
    gmg_kernels.prolong_add(line, fine)
    inside = tuple(slice(2, -2) if n > 1 else slice(1, -1) for n in shape)  # off the walls' ghost -c
    np.testing.assert_allclose(np.diff(fine[inside], axis=-1), 0.5)


def test_the_v_cycle_is_a_symmetric_positive_preconditioner():
    matrix = _problems("darcy", 64, count=1, modes=8)[0].matrix
    hierarchy = StencilHierarchy(matrix, dtype="float64")
    assert hierarchy.definite and len(hierarchy.levels) == 3
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 64 * 64))
    assert np.vdot(hierarchy.vcycle(a), b) == pytest.approx(np.vdot(a, hierarchy.vcycle(b)), rel=1e-10)
    assert np.vdot(hierarchy.vcycle(a), a) > 0
    np.testing.assert_allclose(hierarchy @ a, matrix @ a, rtol=0, atol=1e-12 * np.abs(matrix @ a).max())


@pytest.mark.parametrize("family, n, config, definite", [
    ("darcy", 64, {"modes": 8}, True),
    ("darcy", 64, {"coefficient": "smooth"}, True),
    ("darcy3d", 16, {"modes": 4, "coefficient": "lognormal"}, True),
    ("helmholtz", 64, {}, False),
])
def test_gmg_agrees_with_a_direct_solve(family, n, config, definite):
    problems = _problems(family, n, **config)
    results = list(GMGSolver(rtol=1e-10).solve((p.matrix, p.rhs) for p in problems))
    for problem, (x, stats) in zip(problems, results, strict=True):
        expected = spla.spsolve(problem.matrix.tocsc(), problem.rhs)
        assert np.linalg.norm(x - expected) <= 1e-8 * np.linalg.norm(expected)
        assert stats.residual <= 1e-10 and 0 < stats.iterations <= 25
    assert StencilHierarchy(problems[0].matrix).definite is definite


@pytest.mark.parametrize("shape, shift", [((16, 16), 0.0), ((16, 16), 300.0), ((8, 8, 8), 0.0), ((8, 8, 8), 150.0)])
def test_the_banded_factorisation_solves_the_coarsest_level_exactly(shape, shift):
    """L D Lᵀ in band storage against a dense solve, SPD and indefinite, 2-D and 3-D."""
    rng = np.random.default_rng(2)
    cells = int(np.prod(shape))
    matrix = diffusion_matrix(np.exp(rng.standard_normal(shape)), shift=shift)
    level = _level(matrix)
    grid = level.shape
    band = np.empty((cells, 1 + (grid[1] * grid[2] if grid[0] > 1 else grid[2])))
    assert gmg_kernels.band_factor(level.diagonal, *level.faces, band) == 0
    f = rng.standard_normal(grid)
    u = np.zeros(tuple(n + 2 for n in grid))
    gmg_kernels.band_solve(band, f, u)
    expected = np.linalg.solve(matrix.toarray(), f.ravel())
    np.testing.assert_allclose(u[1:-1, 1:-1, 1:-1].ravel(), expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


def test_a_vanishing_pivot_is_raised_and_the_krylov_method_makes_up_the_difference():
    """A shift that zeroes the second pivot: the factor is of a nearby matrix, the answer still the exact one."""
    base = diffusion_matrix(np.ones((4, 4)))
    a00, a11, t = base[0, 0], base[1, 1], -base[0, 1]
    shift = (a00 + a11 - np.hypot(a00 - a11, 2 * t)) / 2  # (a00 - s)(a11 - s) = t²
    matrix = diffusion_matrix(np.ones((4, 4)), shift=shift)
    assert StencilHierarchy(matrix).raised_pivots >= 1
    rhs = np.random.default_rng(3).standard_normal(16)
    [(x, stats)] = GMGSolver(rtol=1e-10).solve([(matrix, rhs)])
    np.testing.assert_allclose(x, np.linalg.solve(matrix.toarray(), rhs), rtol=1e-7)
    assert stats.residual <= 1e-10


def test_gmres_takes_over_where_cg_stops_on_an_indefinite_matrix(monkeypatch):
    problem = _problems("helmholtz", 64, count=1)[0]
    monkeypatch.setattr(gmg, "INDEFINITE_CG_LIMIT", 2)
    [(x, stats)] = GMGSolver(rtol=1e-10).solve([(problem.matrix, problem.rhs)])
    expected = spla.spsolve(problem.matrix.tocsc(), problem.rhs)
    assert np.linalg.norm(x - expected) <= 1e-8 * np.linalg.norm(expected)
    assert stats.residual <= 1e-10 and stats.iterations > 2


@pytest.mark.parametrize("config", [{"modes": 8}, {"coefficient": "smooth"}])
def test_full_multigrid_guesses_within_a_percent(config):
    """CG's first guess: nested V-cycles from the coarsest grid up, ten times closer than one V-cycle."""
    problem = _problems("darcy", 64, count=1, **config)[0]
    hierarchy = StencilHierarchy(problem.matrix)
    exact = spla.spsolve(problem.matrix.tocsc(), problem.rhs)
    guess, once = hierarchy.full_multigrid(problem.rhs), hierarchy.vcycle(problem.rhs)
    assert np.linalg.norm(guess - exact) < 1e-2 * np.linalg.norm(exact)
    assert np.linalg.norm(guess - exact) < 0.2 * np.linalg.norm(once - exact)


def test_a_sequence_reads_its_structure_once_and_checks_every_matrix():
    first, second = (p.matrix for p in _problems("darcy", 32, count=2, modes=8))
    hierarchy = StencilHierarchy(first)
    assert hierarchy.pattern.matches(second) and not hierarchy.pattern.matches(second.tocsr())
    reused = StencilHierarchy(second, pattern=hierarchy.pattern)
    assert reused.pattern is hierarchy.pattern
    np.testing.assert_array_equal(reused.levels[0].diagonal.ravel(), second.diagonal())
    other = diffusion_matrix(np.ones((16, 16)))
    assert StencilHierarchy(other, pattern=hierarchy.pattern).levels[0].shape == (1, 16, 16)


@pytest.mark.parametrize("matrix, why", [
    (sp.diags([np.full(64, 4.0), -np.ones(63), -np.ones(63), -np.ones(56), -np.ones(56)], [0, 1, -1, 8, -8]),
     "couples the last cell of a row to the next row's first"),
    (diffusion_matrix(np.ones((8, 8))) + sp.diags([np.ones(55)], [9], shape=(64, 64)), "a diagonal neighbour"),
    (diffusion_matrix(np.ones((8, 8))) + sp.triu(diffusion_matrix(np.ones((8, 8))), 1), "not symmetric"),
    (sp.identity(50, format="csr"), "not a square or cubic grid"),
])
def test_a_matrix_that_is_not_a_grid_stencil_is_refused_by_name(matrix, why):
    with pytest.raises(ValueError, match="gmg: the .* matrix is not a symmetric 5- or 7-point stencil"):
        list(GMGSolver().solve([(matrix, np.ones(matrix.shape[0]))]))


def test_warm_up_leaves_no_state_behind():
    solver = GMGSolver(rtol=1e-9)
    solver.warm_up()
    problem = _problems("darcy", 32, count=1, modes=8)[0]
    [(x, stats)] = GMGSolver(rtol=1e-9).solve([(problem.matrix, problem.rhs)])
    [(y, _)] = solver.solve([(problem.matrix, problem.rhs)])
    np.testing.assert_array_equal(x, y)
    assert stats.residual <= 1e-9
