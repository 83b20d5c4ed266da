"""Spectral-Refiner: the NSE residual and the solver time derivative, its H^-1 norm, the enlarged
output layers (SFNO, FNO-3D, TFNO) and the driver (``nopx refine``: test_refine_cli.py)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nopx.datagen.navier_stokes import forcing_field, simulate
from nopx.datagen.navier_stokes_residual import (nse_residual, solver_time_derivative,
                                                 time_derivative_fd)
from nopx.datagen.periodic_grf import PeriodicGRF
from nopx.models import FNO, SFNO, TFNO
from nopx.models.sfno import output_operator
from nopx.refine import (enlarge_output_modes, enlarge_spectral_conv, h_minus1, output_cut,
                         refine, relative_l2)
from nopx.training.tasks import spacetime

NU = 1e-3


def ns_trajectories(n: int, count: int, *, dt: float, steps_per_record: int, records: int,
                    dtype: str = "float64") -> np.ndarray:
    """``(count, n, n, records + 1)`` vorticity trajectories of the data generator (FNO forcing)."""
    grf = PeriodicGRF(modes=4)
    w0 = np.stack([grf.sample(0, i, n) for i in range(count)])
    w = simulate(w0, nu=NU, dt=dt, steps_per_record=steps_per_record, records=records,
                 forcing=forcing_field("fno", n), scheme="cn_ab2", dtype=dtype)
    return np.moveaxis(w, 1, -1)


def test_residual_of_a_generated_trajectory_is_small():
    record = 0.01
    traj = ns_trajectories(32, 2, dt=1e-3, steps_per_record=10, records=6)
    f = forcing_field("fno", 32)
    with jax.enable_x64(True):
        w = jnp.asarray(traj)
        eta = h_minus1(nse_residual(w, nu=NU, forcing=f, dt=record))
        assert eta.dtype == jnp.float64 and eta.shape == (2,)
        # Scale of the terms: the H^-1 norm of ∂_t w alone.
        scale = h_minus1(nse_residual(w, nu=0.0, forcing=None, dt=record, dealias=False)
                         - nse_residual(0 * w, nu=0.0, forcing=None, dt=record))
        perturbed = h_minus1(nse_residual(1.01 * w, nu=NU, forcing=f, dt=record))
        eta, scale, perturbed = (np.asarray(v) for v in (eta, scale, perturbed))
    # What is left is the time-stepping and finite-difference error, O(record²).
    assert np.all(eta < 1e-4 * scale)
    assert np.all(perturbed > 100 * eta)


def test_residual_conventions_on_exact_solutions():
    n, k, amplitude = 16, 2, 0.1
    grid = np.arange(n) / n
    x, y = np.meshgrid(grid, grid, indexing="ij")
    times = 0.1 * np.arange(5)
    with jax.enable_x64(True):
        # Kolmogorov: w = f / (4π²k²ν) is steady (u·∇w = 0): −νΔw = f, ∂_t w = 0.
        f = forcing_field("kolmogorov", n, amplitude, k)
        steady_field = f / (4 * np.pi ** 2 * k ** 2 * NU)
        steady = jnp.asarray(np.repeat(steady_field[None, ..., None], 5, axis=-1))
        r = nse_residual(steady, nu=NU, forcing=f, dt=0.1)
        assert float(jnp.abs(r).max()) < 1e-12 * float(jnp.abs(steady).max())
        # Decaying eigenmode: ∂_t w = νΔw and u·∇w = 0; the exact ∂_t w as an array.
        decay = 8 * np.pi ** 2 * NU
        mode = np.sin(2 * np.pi * x) * np.sin(2 * np.pi * y)
        w = jnp.asarray(mode[None, ..., None] * np.exp(-decay * times))
        r = nse_residual(w, nu=NU, forcing=None, dt=0.1, time_derivative=-decay * w)
        assert float(jnp.abs(r).max()) < 1e-12
        with pytest.raises(ValueError, match="output_cut"):
            nse_residual(w, nu=NU, forcing=None, dt=0.1, time_derivative="spectral")


def test_h_minus1_by_hand():
    # r = cos(2πx) in every slice: |r̂|² = 1/4 at k = ±1: η² = (1/2) / (α + 4π²).
    n = 8
    grid = np.arange(n) / n
    r = np.cos(2 * np.pi * grid)[None, :, None, None] * np.ones((1, n, n, 3))
    with jax.enable_x64(True):
        eta = h_minus1(jnp.asarray(r), alpha=0.5)
    assert float(eta[0]) == pytest.approx(math.sqrt(0.5 / (0.5 + 4 * math.pi ** 2)), rel=1e-12)


def _fit(model: nnx.Module, apply, x, y):
    """30 Adam steps on the mean squared error of ``apply(model, x)`` on the first 4
    trajectories; returns ``(model, x, y)`` of the others."""
    optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(m, opt, x, y):
        grads = nnx.grad(lambda m: jnp.mean((apply(m, x) - y) ** 2))(m)
        opt.update(m, grads)

    for _ in range(30):
        step(model, optimizer, x[:4], y[:4])
    return model, x[4:], y[4:]


@pytest.fixture(scope="module")
def trained():
    """A tiny SFNO trained for a few Adam steps on 16² trajectories, and held-out ones."""
    traj = ns_trajectories(16, 6, dt=5e-3, steps_per_record=10, records=10,
                           dtype="float32").astype(np.float32)
    x, y = traj[..., :4], traj[..., 4:10]
    model = SFNO(4, 6, n_modes=(4, 4, 3), hidden_channels=4, n_layers=2, latent_steps=4)
    return _fit(model, lambda m, v: m(v), x, y)


def test_enlarged_output_layer_reproduces_the_model(trained):
    model, x, _ = trained
    model = nnx.clone(model)                            # the fixture is shared: leave it alone
    old = model.output_conv
    old.bias_real[...] = 1e3 * jax.random.normal(jax.random.PRNGKey(0), old.bias_real.shape)
    big = enlarge_output_modes(model, (8, 8, 4), delta=1.0)
    new = big.output_conv
    assert new.weight_real.shape == (16, 16, 4, 1, 1) and new.delta == 1.0
    assert model.output_conv is old and old.weight_real.shape == (8, 8, 3, 1, 1)  # unchanged
    # The trained modes sit at frequencies 0..3 and -4..-1 of each spatial axis.
    rows = np.r_[0:4, 12:16]
    np.testing.assert_array_equal(new.weight_imag[...][np.ix_(rows, rows, range(3))],
                                  old.weight_imag[...])
    np.testing.assert_allclose(new.bias_real[...][np.ix_(rows, rows, range(3))],
                               old.bias_real[...] * old.delta, rtol=1e-6)   # δ·b unchanged
    assert float(jnp.abs(new.weight_real[...][8]).max()) < 1e-7                # new: tiny
    # Same output operator on any latent (the trunk is shared; test_refine_lowers_the_residual
    # checks the whole enlarged model through its initial prediction).
    latent = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 16, 4, 1))
    first, second = nnx.jit(lambda a, b, v: tuple(output_operator(c, latent, v, 6)
                                                  for c in (a, b)))(old, new, jnp.asarray(x))
    np.testing.assert_allclose(second, first, atol=1e-5 * float(jnp.abs(first).max()))
    with pytest.raises(ValueError, match="at least"):
        enlarge_output_modes(model, (2, 8, 4))


@pytest.mark.parametrize("time_derivative", ["spectral", "fd"])
def test_refine_lowers_the_residual(trained, time_derivative):
    model, x, y = trained
    before = nnx.jit(lambda m, v: m(v))(model, jnp.asarray(x))
    result = refine(model, x, out_steps=6, nu=NU, forcing=forcing_field("fno", 16), dt=0.05,
                    modes=(8, 8, 4), iterations=12, target=y, time_derivative=time_derivative)
    history = result.residual_history
    assert history.shape == (13, 2) and history.dtype == np.float64
    # Far from converged this early (Adam moves the bias by about lr per step), but steady.
    assert np.all(np.diff(history, axis=0) < 0) and np.all(history[-1] < 0.75 * history[0])
    # The best iterate by residual, per trajectory (here the last, the descent being steady).
    np.testing.assert_array_equal(result.best_iteration, [12, 12])
    np.testing.assert_array_equal(result.residual_after, history.min(axis=0))
    assert np.all(result.rel_l2_after < result.rel_l2_before)      # closer to the truth too
    assert result.prediction.shape == result.initial_prediction.shape == (2, 16, 16, 6)
    np.testing.assert_allclose(result.initial_prediction, before, atol=1e-5)
    assert result.rel_l2_before.shape == result.rel_l2_after.shape == (2,)
    np.testing.assert_allclose(result.rel_l2_before, relative_l2(before, jnp.asarray(y)),
                               rtol=1e-4)
    assert result.output_params["weight_real"][...].shape == (2, 16, 16, 4, 1, 1)


def test_refine_keeps_the_best_iterate_per_trajectory(trained):
    # A learning rate far too large: Adam overshoots, the residual rises above the start, and
    # the result must fall back to the best iterate (possibly the model's own prediction).
    model, x, _ = trained
    result = refine(model, x, out_steps=6, nu=NU, forcing=forcing_field("fno", 16), dt=0.05,
                    modes=(8, 8, 4), iterations=6, lr_bias=1e4, lr_weight=1.0)
    history = result.residual_history
    assert np.any(history[-1] > history[0])                     # it did overshoot
    np.testing.assert_array_equal(result.residual_after, history.min(axis=0))
    assert np.all(result.residual_after <= result.residual_before)
    best = result.best_iteration
    assert best.shape == (2,) and np.all(history[best, [0, 1]] == history.min(axis=0))
    # Where the model's own prediction was best, it comes back unchanged.
    kept = best == 0
    np.testing.assert_array_equal(result.prediction[kept], result.initial_prediction[kept])


def test_solver_time_derivative_is_the_generators_step():
    """``R(w)`` equals (one cn_euler step of the data generator of size ε − w) / ε up to
    O(ε): the step is ``a w + b (f − N)`` with ``a = 1 − εν|k|² + O(ε²)``, ``b = ε (1 +
    O(ε))``; at ε = 1e-7 that is ~1e-7 relative, and roundoff 1e-16/ε ~ 1e-9."""
    n, eps = 32, 1e-7
    grf = PeriodicGRF(modes=8)
    w0 = np.stack([grf.sample(0, i, n) for i in range(2)])
    f = forcing_field("fno", n)
    stepped = simulate(w0, nu=NU, dt=eps, steps_per_record=1, records=1, forcing=f,
                       scheme="cn_euler")[:, 1]
    with jax.enable_x64(True):
        rhs = np.asarray(solver_time_derivative(jnp.asarray(w0[..., None]), nu=NU, forcing=f))
    step = (stepped - w0) / eps
    assert np.abs(rhs[..., 0] - step).max() < 1e-5 * np.abs(step).max()


def test_solver_time_derivative_agrees_with_a_trajectory():
    """On a generator trajectory (cn_ab2, dt 1e-3, slices h = 0.02 apart) ``R(w(t))`` is the
    trajectory's own time derivative. Measured against central differences of the slices:
    their error is ≈ h²/6·∂³w, estimated as ⅓ of the gap between the h and 2h differences
    (Richardson, second order); the time stepping adds ~1e-7."""
    h = 0.02
    traj = ns_trajectories(32, 1, dt=1e-3, steps_per_record=20, records=8)       # t = 0..0.16
    f = forcing_field("fno", 32)
    with jax.enable_x64(True):
        w = jnp.asarray(traj)
        rhs = np.asarray(solver_time_derivative(w, nu=NU, forcing=f))[..., 2:-2]
        fd_h = np.asarray(time_derivative_fd(w, h))[..., 2:-2]
        fd_2h = np.asarray((w[..., 4:] - w[..., :-4]) / (4 * h))
    fd_error = np.abs(fd_2h - fd_h).max() / 3
    gap = np.abs(rhs - fd_h).max()
    assert gap < 2 * fd_error + 1e-6 * np.abs(rhs).max()
    assert gap < 1e-3 * np.abs(rhs).max()


def test_exact_solution_and_the_solver_caveat():
    # One shell |k|² = 5 (u·∇w = 0 on it), forced on it: w(t) = w∞ + e^{-λt}(w0 − w∞),
    # λ = 4π²·5ν, solves the NSE exactly; R(w) is its derivative to roundoff.
    n = 16
    grid = np.arange(n) / n
    x, y = np.meshgrid(grid, grid, indexing="ij")
    shell = [np.sin(2 * np.pi * (x + 2 * y)), np.cos(2 * np.pi * (2 * x - y))]
    lam = 4 * np.pi ** 2 * 5 * NU
    f = 0.1 * shell[1]
    w_inf, w0 = f / lam, shell[0] + 0.5 * shell[1]
    times = 0.5 * np.arange(4)
    decay = np.exp(-lam * times)
    w = w_inf[..., None] + decay * (w0 - w_inf)[..., None]
    with jax.enable_x64(True):
        exact = -lam * decay * (w0 - w_inf)[..., None]
        rhs = solver_time_derivative(jnp.asarray(w[None]), nu=NU, forcing=f)
        assert float(jnp.abs(rhs[0] - exact).max()) < 1e-12
        # The caveat: with the solver's derivative the residual vanishes for any field.
        noise = jax.random.normal(jax.random.PRNGKey(0), (1, n, n, 3), jnp.float64)
        r = nse_residual(noise, nu=NU, forcing=f, dt=1.0, time_derivative="solver")
        assert float(jnp.abs(r).max()) < 1e-12
    with pytest.raises(ValueError, match="vanish"):
        refine(nnx.eval_shape(lambda: SFNO(4, 6, n_modes=(4, 4, 3), hidden_channels=4,
                                           n_layers=2)),
               np.zeros((1, 16, 16, 4)), out_steps=6, nu=NU, forcing=None, dt=1.0,
               time_derivative="solver")


@pytest.fixture(scope="module")
def trained_fno3d():
    """A tiny FNO-3D (space-time) trained for a few Adam steps on 16² trajectories."""
    traj = ns_trajectories(16, 6, dt=5e-3, steps_per_record=10, records=10,
                           dtype="float32").astype(np.float32)
    x, y = traj[..., :4], traj[..., 4:10]
    model = FNO(4, 1, n_modes=(8, 8, 4), hidden_channels=6, n_layers=2,
                domain_padding=[0.0, 0.0, 0.25])
    return _fit(model, lambda m, v: spacetime(m, v, 6), x, y)


def test_fno3d_refinement_lowers_the_residual(trained_fno3d):
    model, x, y = trained_fno3d
    before = nnx.jit(lambda m, v: spacetime(m, v, 6))(model, jnp.asarray(x))
    # Anchored: the residual is measured from the last input slice on (x's slices are 0.05
    # apart too), so it is larger before refining than the prediction's own.
    result = refine(model, x, out_steps=6, nu=NU, forcing=forcing_field("fno", 16), dt=0.05,
                    iterations=10, lr_weight=1e-2, time_derivative="fd", anchor=True, target=y)
    np.testing.assert_allclose(result.initial_prediction, before, atol=1e-5)
    assert np.all(result.residual_after < 0.9 * result.residual_before)
    assert result.output_params["weight_real"].shape == (2, 16, 16, 3, 6, 6)  # full x, y grid
    with pytest.raises(ValueError, match="fd"):
        refine(model, x, out_steps=6, nu=NU, forcing=None, dt=0.05, time_derivative="spectral")
    with pytest.raises(ValueError, match="anchor"):
        refine(model, x, out_steps=6, nu=NU, forcing=None, dt=0.05, time_derivative="spectral",
               anchor=True)


def test_enlarged_tfno_layer_reproduces_the_model():
    model = TFNO(4, 1, n_modes=(8, 8, 4), hidden_channels=6, n_layers=2, rank=0.5,
                 domain_padding=[0.0, 0.0, 0.25])
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 16, 16, 4))
    cut = output_cut(model, (16, 16, 6), out_steps=6)
    assert cut.model.blocks[-1].conv.weight is None                       # rebuilt dense
    first = nnx.jit(lambda m, v: spacetime(m, v, 6))(model, x)
    second = nnx.jit(lambda m, v: cut.head(m, cut.features(m, v), v)[0])(cut.model, x)
    np.testing.assert_allclose(second, first, atol=1e-5 * float(jnp.abs(first).max()))
    with pytest.raises(ValueError, match="at least"):
        enlarge_spectral_conv(model.blocks[-1].conv, (4, 16, 6))
    with pytest.raises(ValueError, match="space-time"):
        output_cut(FNO(1, 1, (8, 8), 4), (16, 16), out_steps=1)
