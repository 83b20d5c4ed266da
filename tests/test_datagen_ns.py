"""Navier–Stokes vorticity solver: exact solutions, temporal order, invariants, GRF initial fields."""

import numpy as np
import pytest

from nopx.datagen.navier_stokes import SCHEMES, forcing_field, simulate
from nopx.datagen.periodic_grf import PeriodicGRF
from nopx.datagen.torus import nodes


def _shell_field(n, rng):
    """A random combination of the modes with |k|² = 25: a steady state of Euler (u·∇w = 0)."""
    x, y = np.meshgrid(nodes(n), nodes(n), indexing="ij")
    w = np.zeros((n, n))
    for k1, k2 in [(5, 0), (0, 5), (3, 4), (4, 3), (3, -4), (4, -3)]:
        a, b = rng.standard_normal(2)
        w += a * np.cos(2 * np.pi * (k1 * x + k2 * y)) + b * np.sin(2 * np.pi * (k1 * x + k2 * y))
    return w


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_unforced_eigenmode_decays_exactly(scheme):
    nu, t_end, dt = 1e-3, 1.0, 1e-3
    w0 = _shell_field(32, np.random.default_rng(0))[None]
    w = simulate(w0, nu=nu, dt=dt, steps_per_record=250, records=4, scheme=scheme)
    decay = np.exp(-nu * 4 * np.pi**2 * 25 * np.linspace(0, t_end, 5))
    np.testing.assert_allclose(w[0], decay[:, None, None] * w0[0], rtol=0, atol=1e-6 * np.abs(w0).max())
    assert decay[-1] < 0.4  # the decay is real, not a no-op


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_kolmogorov_steady_state_and_its_transient(scheme):
    nu, k, amplitude = 1e-2, 2, 0.5
    f = forcing_field("kolmogorov", 32, amplitude, k)
    steady = f / (4 * np.pi**2 * k**2 * nu)
    w = simulate(np.stack([steady, 0 * steady]), nu=nu, dt=1e-3, steps_per_record=100, records=5,
                 forcing=f, scheme=scheme)
    np.testing.assert_allclose(w[0], np.broadcast_to(steady, w[0].shape), rtol=0, atol=1e-12)
    t = np.linspace(0, 0.5, 6)[:, None, None]
    exact = steady * (1 - np.exp(-nu * 4 * np.pi**2 * k**2 * t))
    np.testing.assert_allclose(w[1], exact, rtol=0, atol=1e-6 * np.abs(steady).max())


def _fno_reference(w0, f, nu, dt, steps):
    """FNO's ns_2d.py step (Jacobian form, dealiased output, CN + Euler), with full complex FFTs."""
    n = w0.shape[-1]
    k = np.fft.fftfreq(n, 1.0 / n)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    lap = 4 * np.pi**2 * (kx**2 + ky**2)
    lap[0, 0] = 1.0
    keep = (np.abs(kx) <= 2 / 3 * (n // 2)) & (np.abs(ky) <= 2 / 3 * (n // 2))
    w_h, f_h = np.fft.fft2(w0), np.fft.fft2(f)
    for _ in range(steps):
        psi_h = w_h / lap
        u = np.fft.ifft2(2j * np.pi * ky * psi_h).real
        v = np.fft.ifft2(-2j * np.pi * kx * psi_h).real
        wx = np.fft.ifft2(2j * np.pi * kx * w_h).real
        wy = np.fft.ifft2(2j * np.pi * ky * w_h).real
        adv_h = keep * np.fft.fft2(u * wx + v * wy)
        w_h = (dt * (f_h - adv_h) + (1 - 0.5 * dt * nu * lap) * w_h) / (1 + 0.5 * dt * nu * lap)
    return np.fft.ifft2(w_h).real


def test_cn_euler_is_the_fno_scheme():
    """Band-limited to the 2/3 cutoff, FNO's Jacobian form and our Basdevant form agree to roundoff."""
    n, grf = 32, PeriodicGRF(modes=10)
    w0 = np.stack([grf.sample(3, i, n) for i in range(2)])
    f = forcing_field("fno", n)
    ours = simulate(w0, nu=1e-3, dt=1e-2, steps_per_record=50, records=1, forcing=f)[:, -1]
    reference = np.stack([_fno_reference(w, f, 1e-3, 1e-2, 50) for w in w0])
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12 * np.abs(reference).max())
    assert np.abs(ours - w0).max() > 0.1 * np.abs(w0).max()  # the flow moved


@pytest.mark.parametrize(("scheme", "order"), [("cn_euler", 1), ("cn_ab2", 2), ("cn_heun", 2)])
def test_temporal_order(scheme, order):
    n, t_end = 32, 1.0
    grf = PeriodicGRF(modes=8)
    w0 = np.stack([grf.sample(0, i, n) for i in range(2)])
    f = forcing_field("fno", n)

    def final(scheme, steps):
        return simulate(w0, nu=1e-3, dt=t_end / steps, steps_per_record=steps, records=1,
                        forcing=f, scheme=scheme)[:, -1]

    reference = final("cn_heun", 8192)
    errors = [np.abs(final(scheme, steps) - reference).max() for steps in (32, 64, 128)]
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    np.testing.assert_allclose(observed, order, atol=0.15)


def _enstrophy_and_energy(w):
    """Mean of w² and of |u|² over the torus, per snapshot: w (..., n, n)."""
    n = w.shape[-1]
    k = np.fft.fftfreq(n, 1.0 / n)
    k2 = 4 * np.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2)
    w_h = np.fft.fft2(w) / n**2
    energy = np.where(k2 > 0, np.abs(w_h) ** 2 / np.where(k2 > 0, k2, 1), 0).sum(axis=(-2, -1))
    return (w**2).mean(axis=(-2, -1)), energy


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_unforced_enstrophy_and_energy_never_grow(scheme):
    grf = PeriodicGRF(modes=10)
    w0 = 3 * np.stack([grf.sample(1, i, 32) for i in range(2)])
    w = simulate(w0, nu=1e-3, dt=2e-3, steps_per_record=50, records=10, scheme=scheme)
    for invariant in _enstrophy_and_energy(w):
        assert (np.diff(invariant, axis=1) <= 1e-12 * invariant[:, :1]).all()
        assert (invariant[:, -1] < 0.99 * invariant[:, 0]).all()


def test_inviscid_truncated_flow_conserves_enstrophy_and_energy():
    """The 2/3-truncated nonlinear term conserves both; the time stepping adds O(dt^p) drift."""
    grf = PeriodicGRF(modes=10)
    w0 = 3 * np.stack([grf.sample(1, i, 32) for i in range(2)])
    drift = {}
    for scheme in SCHEMES:
        w = simulate(w0, nu=0.0, dt=2e-3, steps_per_record=50, records=10, scheme=scheme)
        drift[scheme] = [np.abs(x[:, -1] / x[:, 0] - 1).max() for x in _enstrophy_and_energy(w)]
    assert max(drift["cn_heun"]) < 1e-7 and max(drift["cn_ab2"]) < 1e-5
    assert 1e-5 < max(drift["cn_euler"]) < 2e-3  # explicit Euler amplifies rotation: first order


def test_forced_flow_stays_within_the_enstrophy_bound():
    """d‖w‖/dt ≤ −4π²ν‖w‖ + ‖f‖ (Poincaré), so ‖w(t)‖ ≤ max(‖w0‖, ‖f‖ / (4π²ν))."""
    nu, n = 1e-3, 32
    f = forcing_field("fno", n)
    w0 = np.stack([PeriodicGRF(modes=10).sample(2, i, n) for i in range(2)])
    w = simulate(w0, nu=nu, dt=1e-2, steps_per_record=100, records=20, forcing=f, scheme="cn_ab2")
    norm = np.sqrt((w**2).mean(axis=(-2, -1)))
    bound = np.maximum(norm[:, :1], np.sqrt((f**2).mean()) / (4 * np.pi**2 * nu))
    assert np.isfinite(w).all() and (norm <= bound * (1 + 1e-6)).all()
    assert (norm[:, -1] > 2 * norm[:, 0]).all()  # the forcing did pump enstrophy in


def test_refined_grids_converge_spectrally_to_one_trajectory():
    """The GRF is one function, so one sample simulated on 32², 64², 128² converges at the 32² nodes."""
    grf = PeriodicGRF(modes=8)
    xi = grf.coefficients(0, 5)
    w32, w64, w128 = [simulate(grf.synthesize(xi, n)[None], nu=1e-3, dt=1e-2, steps_per_record=50, records=2,
                               forcing=forcing_field("fno", n), subsample=n // 32, scheme="cn_ab2")
                      for n in (32, 64, 128)]
    coarse, fine = np.abs(w32 - w64).max(), np.abs(w64 - w128).max()
    assert fine < 1e-9 * np.abs(w128).max() and coarse > 1e4 * fine
    np.testing.assert_allclose(w32[:, 0], w128[:, 0], rtol=0, atol=1e-13)  # t = 0: the same GRF values


def test_float32_and_spectral_downsampling():
    grf = PeriodicGRF(modes=6)
    w0 = np.stack([grf.sample(0, i, 32) for i in range(2)])
    args = dict(nu=1e-3, dt=1e-2, steps_per_record=20, records=2, forcing=forcing_field("fno", 32))
    full = simulate(w0, **args)
    single = simulate(w0, **args, dtype="float32")
    assert single.dtype == np.float32 and full.dtype == np.float64
    np.testing.assert_allclose(single, full, rtol=0, atol=1e-5)
    strided = simulate(w0, **args, subsample=2)
    np.testing.assert_array_equal(strided, full[..., ::2, ::2])
    # Band-limited below the 16² Nyquist frequency, truncation and striding agree.
    spectral = simulate(w0, **args, subsample=2, downsample="spectral")
    np.testing.assert_allclose(spectral[:, 0], strided[:, 0], rtol=0, atol=1e-12)


def test_grf_is_one_function_on_every_grid():
    grf = PeriodicGRF()
    xi = grf.coefficients(4, 11)
    coarse, fine = grf.synthesize(xi, 48), grf.synthesize(xi, 192)
    np.testing.assert_allclose(coarse, fine[::4, ::4], rtol=0, atol=1e-12)
    i, j = np.array([20, 74, 180]), np.array([100, 4, 122])
    np.testing.assert_allclose(grf.evaluate(xi, i / 200, j / 200), grf.synthesize(xi, 200)[i, j], atol=1e-12)


def test_grf_matches_fno_gaussian_rf():
    """random_fields.GaussianRF(2, s, 2.5, 7): ifft2(s² √2 σ (4π²|k|² + τ²)^(−α/2) (ξ + iη)).real."""
    s, grf = 32, PeriodicGRF(modes=15)
    xi = grf.coefficients(0, 1)
    k = np.fft.fftfreq(s, 1.0 / s)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    sqrt_eig = s**2 * np.sqrt(2.0) * 7**1.5 * (4 * np.pi**2 * (kx**2 + ky**2) + 49) ** (-1.25)
    sqrt_eig[0, 0] = 0.0
    coeff = np.zeros((2, s, s))  # FNO's coefficient array, our block in its wavenumber layout
    rows = grf.wavenumbers() % s
    coeff[:, rows[:, None], rows[None, :]] = xi
    expected = np.fft.ifft2(sqrt_eig * (coeff[0] + 1j * coeff[1])).real
    np.testing.assert_allclose(grf.synthesize(xi, s), expected, rtol=0, atol=1e-13)


def test_grf_statistics():
    grf = PeriodicGRF(modes=6)
    samples = np.stack([grf.sample(9, i, 8) for i in range(3000)])
    np.testing.assert_allclose(samples.mean(axis=(1, 2)), 0, atol=1e-13)
    np.testing.assert_allclose(samples.var(axis=0), (grf.sqrt_eigenvalues() ** 2).sum(), rtol=0.1)
    assert not np.allclose(grf.sample(9, 0, 8), grf.sample(9, 1, 8))
