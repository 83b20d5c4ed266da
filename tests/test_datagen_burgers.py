"""1-D Burgers: the exact Cole–Hopf solution, fourth order in time, the GRF, the recipe end to end."""

import numpy as np
import pytest

import nopx.datagen as dg
from nopx.datagen.burgers import grf_amplitudes, simulate
from nopx.datagen.torus import TorusGrid, nodes
from nopx.errors import UserError

NU = 0.1


def _cole_hopf(x: np.ndarray, t: float) -> np.ndarray:
    """``u = −2ν φ_x / φ`` with ``φ = 1.5 + e^{−4π²νt} cos 2πx`` solving the heat equation."""
    decay = np.exp(-4 * np.pi**2 * NU * t)
    return 4 * np.pi * NU * decay * np.sin(2 * np.pi * x) / (1.5 + decay * np.cos(2 * np.pi * x))


def test_matches_cole_hopf_at_fourth_order_in_time():
    x = nodes(64)
    exact = _cole_hopf(x, 0.5)

    def error(dt: float) -> float:
        u = simulate(_cole_hopf(x, 0.0)[None], nu=NU, t_end=0.5, dt=dt)[0]
        return float(np.abs(u - exact).max() / np.abs(exact).max())

    errors = [error(dt) for dt in (0.025, 0.0125)]
    assert errors[1] < 1e-6
    assert 10 < errors[0] / errors[1] < 20, errors  # 12.7 here, 16 as dt -> 0
    assert error(1e-3) < 1e-10


def test_initial_state_is_one_function_on_every_grid_with_the_grf_variance():
    config = dg.BurgersConfig(modes=6, batch=4)
    coarse = dg.Burgers1D(config, grid=TorusGrid(n=16, ndim=1), seed=3)
    fine = dg.Burgers1D(config, grid=TorusGrid(n=64, ndim=1), seed=3)
    u_coarse, params = coarse.initial_state(7)
    np.testing.assert_allclose(u_coarse, fine.initial_state(7)[0][::4], atol=1e-13)
    assert params.shape == (12,)
    samples = np.stack([coarse.initial_state(i)[0] for i in range(2000)])
    expected = np.sum(grf_amplitudes(6, alpha=2.0, tau=5.0, sigma=25.0) ** 2)  # Σ 2λ_k
    assert abs(samples.var(axis=0).mean() / expected - 1) < 0.1
    with pytest.raises(UserError, match=r"grid.n: 12 nodes .* burgers.modes = 6"):
        dg.Burgers1D(config, grid=TorusGrid(n=12, ndim=1), seed=0)


def test_recipe_generates_a_subsampled_deterministic_dataset(tmp_path):
    recipe = dg.recipe_from_mapping({"pde": "burgers", "seed": 1, "samples": 5, "out": "b.h5",
                                     "grid": {"n": 64, "subsample": 4},
                                     "burgers": {"modes": 8, "dt": 0.01, "t_end": 0.2, "batch": 3}},
                                    where="test")
    path = dg.generate(recipe, tmp_path / "b.h5")
    family = recipe.family()
    with dg.open_dataset(path) as data:
        assert data.fields == ("a", "u") and data.field_shape("u") == (16,)
        assert data.attrs["grid_spacing"] == [1 / 16] and data.meta("iterations").tolist() == [20] * 5
        u0 = family.initial_state(4)[0]
        np.testing.assert_allclose(data.read("a", 4), u0[::4], rtol=1e-6)
        u = simulate(u0[None], nu=NU, t_end=0.2, dt=0.01)[0]
        np.testing.assert_allclose(data.read("u", 4), u[::4], rtol=1e-5, atol=1e-7)
