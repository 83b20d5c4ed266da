"""Every PDE family: second-order convergence against a manufactured solution, structure, fields."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla

import nopx.datagen as dg
from nopx.datagen.advection_diffusion import advection_matrix
from nopx.datagen.grid import cell_centres
from nopx.datagen.stencil import diffusion_matrix

pi = np.pi


def _centres(n, ndim):
    return np.meshgrid(*[cell_centres(n)] * ndim, indexing="ij")


def _ratios(errors):
    return np.array(errors[:-1]) / np.array(errors[1:])


def _assert_second_order(errors, low=3.5, high=4.6):
    ratios = _ratios(errors)
    assert np.all((ratios > low) & (ratios < high)), (errors, ratios)


def test_darcy3d_converges_at_second_order():
    def error(n):
        x, y, z = _centres(n, 3)
        u = np.sin(pi * x) * np.sin(pi * y) * np.sin(pi * z)
        a = 1 + x**2 + y + z
        grad_a = (2 * x, np.ones_like(x), np.ones_like(x))
        grad_u = (pi * np.cos(pi * x) * np.sin(pi * y) * np.sin(pi * z),
                  pi * np.sin(pi * x) * np.cos(pi * y) * np.sin(pi * z),
                  pi * np.sin(pi * x) * np.sin(pi * y) * np.cos(pi * z))
        f = -sum(g * d for g, d in zip(grad_a, grad_u)) + 3 * pi**2 * a * u
        solution, _ = spla.cg(diffusion_matrix(a), f.ravel(), rtol=1e-12)
        return np.abs(solution.reshape(u.shape) - u).max()

    _assert_second_order([error(n) for n in (6, 12, 24)])


def test_poisson_with_boundary_data_converges_at_second_order():
    def exact(x, y):
        return np.sin(pi * x) * np.sin(pi * y) + x**2 * y + 1

    def error(n):
        family = dg.Poisson2D(dg.PoissonConfig(), grid=dg.CellGrid(n=n, ndim=2), seed=0)
        matrix, rhs = family.assemble(lambda x, y: 2 * pi**2 * np.sin(pi * x) * np.sin(pi * y) - 2 * y, exact)
        x, y = _centres(n, 2)
        return np.abs(spla.spsolve(matrix, rhs).reshape(n, n) - exact(x, y)).max()

    _assert_second_order([error(n) for n in (16, 32, 64)])


def test_helmholtz_converges_at_second_order_and_is_indefinite():
    def error(n):
        x, y = _centres(n, 2)
        u = np.sin(pi * x) * np.sin(2 * pi * y)
        a = 1 + x**2 + y
        f = -(2 * x * pi * np.cos(pi * x) * np.sin(2 * pi * y) + 2 * pi * np.sin(pi * x) * np.cos(2 * pi * y)) \
            + 5 * pi**2 * a * u - 150.0 * u
        family = dg.Helmholtz2D(dg.HelmholtzConfig(), grid=dg.CellGrid(n=n, ndim=2), seed=0)
        matrix, _ = family.assemble(a, 150.0)
        return np.abs(spla.spsolve(matrix, f.ravel()).reshape(n, n) - u).max()

    _assert_second_order([error(n) for n in (16, 32, 64)])
    eigenvalues = np.linalg.eigvalsh(dg.Helmholtz2D(dg.HelmholtzConfig(), grid=dg.CellGrid(n=12, ndim=2), seed=0)
                                     .problem(3).matrix.toarray())
    assert (eigenvalues < 0).sum() >= 2


@pytest.mark.parametrize("scheme, order", [("crank_nicolson", 2), ("backward_euler", 1)])
def test_heat_converges_in_space_and_time(scheme, order):
    """u = exp(-2π² t) sin(πx) sin(πy) solves the heat equation with κ = 1, f = 0."""
    def error(n, steps):
        config = dg.HeatConfig(scheme=scheme, dt=0.05 / steps, steps=steps, every=steps)
        family = dg.Heat2D(config, grid=dg.CellGrid(n=n, ndim=2), seed=0)
        x, y = _centres(n, 2)
        u0 = np.sin(pi * x) * np.sin(pi * y)
        trajectory = family.trajectory(np.ones((n, n)), u0, params=np.zeros(1))
        lu = spla.splu(trajectory.matrix)
        u = u0.ravel()
        for _ in range(steps):
            u = lu.solve(trajectory.explicit @ u + trajectory.forcing)
        return np.abs(u - np.exp(-2 * pi**2 * 0.05) * u0.ravel()).max()

    if order == 2:  # refine h and dt together
        _assert_second_order([error(n, n // 2) for n in (16, 32, 64)])
    else:  # time error dominates on a fine grid
        ratios = _ratios([error(48, steps) for steps in (5, 10, 20)])
        assert np.all((ratios > 1.7) & (ratios < 2.3)), ratios


def test_advection_diffusion_converges_at_second_order_and_is_divergence_free():
    eps = 0.1

    def psi(x, y):
        return np.sin(2 * pi * x) * np.sin(pi * y) / (2 * pi)

    def error(n):
        x, y = _centres(n, 2)
        u = np.sin(pi * x) * np.sin(pi * y)
        vx = np.sin(2 * pi * x) * np.cos(pi * y) / 2
        vy = -np.cos(2 * pi * x) * np.sin(pi * y)
        f = eps * 2 * pi**2 * u + vx * pi * np.cos(pi * x) * np.sin(pi * y) + vy * pi * np.sin(pi * x) * np.cos(pi * y)
        corners = np.linspace(0, 1, n + 1)
        matrix = diffusion_matrix(np.full((n, n), eps)) + advection_matrix(psi(corners[:, None], corners[None, :]))
        return np.abs(spla.spsolve(matrix.tocsc(), f.ravel()).reshape(n, n) - u).max()

    _assert_second_order([error(n) for n in (16, 32, 64)])
    # Discretely divergence-free: the advection matrix conserves a constant (column sums vanish).
    random_psi = np.random.default_rng(0).standard_normal((9, 9))
    C = advection_matrix(random_psi)
    interior = np.ones((8, 8))
    interior[[0, -1]] = interior[:, [0, -1]] = 0  # away from the Dirichlet boundary
    np.testing.assert_allclose((C.T @ np.ones(64)).reshape(8, 8) * interior, 0, atol=1e-12)


FAMILIES = {
    "darcy": {"modes": 4},
    "darcy3d": {"modes": 4},
    "poisson": {"degree": 2},
    "helmholtz": {},
    "heat": {"modes": 4, "steps": 4, "every": 2},
    "advection_diffusion": {"modes": 4},
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_makes_solvable_reproducible_samples(name):
    cls = dg.family_class(name)
    config = cls.config_type(**FAMILIES[name])
    family = cls(config, grid=dg.CellGrid(n=8, ndim=cls.ndim), seed=3)
    [result] = dg.solve_chain(family, dg.build_solver("direct"), [5], rtol=1e-10)
    shapes = dg.family.stored_shapes(family)
    assert list(result.fields) == list(cls.fields) == list(shapes)
    for field, shape in shapes.items():
        assert result.fields[field].shape == shape and np.isfinite(result.fields[field]).all()
    assert result.params.shape == (family.n_params,)
    again = cls(config, grid=dg.CellGrid(n=8, ndim=cls.ndim), seed=3)
    np.testing.assert_array_equal(dg.family.sample_features(family, 5), dg.family.sample_features(again, 5))
    assert not np.array_equal(dg.family.sample_features(family, 5), dg.family.sample_features(family, 6))
    assert cls.__doc__ and "Good values" in cls.__doc__


def test_darcy_smooth_has_few_parameters():
    family = dg.Darcy2D(dg.DarcyConfig(coefficient="smooth", terms=4), grid=dg.CellGrid(n=16, ndim=2), seed=0)
    problem = family.problem(2)
    assert problem.params.shape == (4,) and np.all(np.abs(problem.params) <= 1)
    np.testing.assert_allclose(np.log(problem.inputs["a"]), family.smooth.evaluate(problem.params, 16))
