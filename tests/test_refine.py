"""Spectral-Refiner core: the NSE residual, its H^-1 norm, the enlarged output layer, the driver."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nopx.datagen.navier_stokes import forcing_field, simulate
from nopx.datagen.periodic_grf import PeriodicGRF
from nopx.models import SFNO
from nopx.models.sfno import output_operator
from nopx.refine import enlarge_output_modes, h_minus1, nse_residual, refine, relative_l2

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
        with pytest.raises(ValueError, match="predict"):
            nse_residual(w, nu=NU, forcing=None, dt=0.1, time_derivative="spectral")


def test_h_minus1_by_hand():
    # r = cos(2πx) in every slice: |r̂|² = 1/4 at k = ±1: η² = (1/2) / (α + 4π²).
    n = 8
    grid = np.arange(n) / n
    r = np.cos(2 * np.pi * grid)[None, :, None, None] * np.ones((1, n, n, 3))
    with jax.enable_x64(True):
        eta = h_minus1(jnp.asarray(r), alpha=0.5)
    assert float(eta[0]) == pytest.approx(math.sqrt(0.5 / (0.5 + 4 * math.pi ** 2)), rel=1e-12)


@pytest.fixture(scope="module")
def trained():
    """A tiny SFNO trained for a few Adam steps on 16² trajectories, and held-out ones."""
    traj = ns_trajectories(16, 6, dt=5e-3, steps_per_record=10, records=10,
                           dtype="float32").astype(np.float32)
    x, y = traj[..., :4], traj[..., 4:10]
    model = SFNO(4, 6, n_modes=(4, 4, 3), hidden_channels=4, n_layers=2, latent_steps=4)
    optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(m, opt, x, y):
        grads = nnx.grad(lambda m: jnp.mean((m(x) - y) ** 2))(m)
        opt.update(m, grads)

    for _ in range(30):
        step(model, optimizer, x[:4], y[:4])
    return model, x[4:], y[4:]


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
    assert np.all(result.rel_l2_after < result.rel_l2_before)      # closer to the truth too
    assert result.prediction.shape == result.initial_prediction.shape == (2, 16, 16, 6)
    np.testing.assert_allclose(result.initial_prediction, before, atol=1e-5)
    assert result.rel_l2_before.shape == result.rel_l2_after.shape == (2,)
    np.testing.assert_allclose(result.rel_l2_before, relative_l2(before, jnp.asarray(y)),
                               rtol=1e-4)
    assert result.output_params["weight_real"][...].shape == (2, 16, 16, 4, 1, 1)
