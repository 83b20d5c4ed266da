"""Space-time (Bochner) Sobolev norms and the torch-cfd compatible values, in float64."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nopx.losses import relative_sobolev, sobolev_norm


def trajectory(n: int = 16, amplitudes=(1.0, -0.5, 2.0)) -> np.ndarray:
    """``(1, n, n, T)``: slice ``t`` is ``a_t sin(2πx) cos(4πy) + b_t`` with ``b = (0, 1, 0)``."""
    grid = np.arange(n) / n
    x, y = np.meshgrid(grid, grid, indexing="ij")
    wave = np.sin(2 * np.pi * x) * np.cos(4 * np.pi * y)
    return np.stack([a * wave + (t == 1) for t, a in enumerate(amplitudes)], -1)[None]


@pytest.mark.parametrize("s", [-1.0, 0.0, 1.0])
@pytest.mark.parametrize("alpha", [1.0, 0.1])
def test_bochner_norm_of_sin_cos_slices(s, alpha):
    # Per slice: four modes of |û|² = 1/16 at |ξ|² = 20π², plus the mean b² at ξ = 0:
    # ‖u(t)‖² = a_t²/4 (α + 20π²)^s + b_t² α^s.
    with jax.enable_x64(True):
        u = jnp.asarray(trajectory())
        slices = [a * a / 4 * (alpha + 20 * math.pi ** 2) ** s + b * alpha ** s
                  for a, b in zip((1.0, -0.5, 2.0), (0, 1, 0))]
        total = sobolev_norm(u, s, alpha=alpha, spacetime=True)
        assert total.dtype == jnp.float64
        assert float(total) == pytest.approx(math.sqrt(sum(slices)), rel=1e-12)
        mean = sobolev_norm(u, s, alpha=alpha, spacetime=True, time_average=True)
        assert float(mean) == pytest.approx(math.sqrt(sum(slices) / 3), rel=1e-12)


def test_alpha_zero_drops_the_mean_for_negative_s():
    with jax.enable_x64(True):
        u = jnp.asarray(trajectory())
        expected = math.sqrt((1 + 0.25 + 4) / 4 / (20 * math.pi ** 2))
        assert float(sobolev_norm(u, -1.0, alpha=0.0, spacetime=True)) == pytest.approx(
            expected, rel=1e-12)
    with pytest.raises(ValueError, match="alpha"):
        sobolev_norm(jnp.ones((1, 4, 4, 1)), -1.0, alpha=-1.0)


def test_relative_bochner_error_is_a_ratio_of_sums_not_a_mean_of_ratios():
    with jax.enable_x64(True):
        target = jnp.asarray(trajectory(amplitudes=(1.0, 1.0, 1.0)))
        error = np.zeros_like(target)
        error[..., 0] = 0.3                           # the first slice only: a constant
        pred = target + error
        s = 1.0
        slice_sq = 0.25 * (1 + 20 * math.pi ** 2) ** s
        target_sq = 3 * slice_sq + 1.0                # slice 1 carries the mean b = 1
        expected = math.sqrt(0.09) / math.sqrt(target_sq)
        value = relative_sobolev(pred, target, s, spacetime=True)
        assert float(value) == pytest.approx(expected, rel=1e-9)             # the 1e-8 guard
        per_slice = relative_sobolev(pred, target, s)            # the default: per channel
        assert float(per_slice) == pytest.approx(0.3 / math.sqrt(slice_sq) / 3, rel=1e-8)


def test_spacetime_batch_mean():
    with jax.enable_x64(True):
        u = jnp.concatenate([jnp.asarray(trajectory()), 2 * jnp.asarray(trajectory())])
        one = float(sobolev_norm(u[:1], 0.0, spacetime=True))
        assert float(sobolev_norm(u, 0.0, spacetime=True)) == pytest.approx(1.5 * one, rel=1e-12)


def torchcfd_sobolev(x, y, s, alpha, diam=1.0, relative=False):
    """torch-cfd ``SobolevLoss.forward`` (time_average, mesh_weighted, norm "backward"), numpy."""
    n, nt = x.shape[1], x.shape[-1]
    k = np.fft.fftfreq(n, d=diam / n)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    weight = np.sqrt(alpha + 4 * np.pi ** 2 * (kx ** 2 + ky ** 2))[None, :, :, None]
    w = weight ** (s / 2) if s != 0 else weight
    x_hat = np.fft.fftn(x, axes=(1, 2)) * w
    y_hat = np.zeros_like(x_hat) if y is None else np.fft.fftn(y, axes=(1, 2)) * w
    diff = np.sqrt((np.abs(x_hat - y_hat) ** 2).sum(axis=(1, 2)))          # (B, T)
    y_norm = np.sqrt((np.abs(y_hat) ** 2).sum(axis=(1, 2)).sum(-1)) if relative else np.ones(len(x))
    loss = np.sqrt((diff ** 2).sum(-1)) / (y_norm / n) / math.sqrt(nt)
    return loss.mean() / n


@pytest.mark.parametrize("s", [-1.0, 0.0, 1.0, 0.5])
def test_torchcfd_compat_matches_its_sobolev_loss(s):
    with jax.enable_x64(True):
        key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
        target = jax.random.normal(key_a, (2, 12, 12, 5), jnp.float64)
        pred = target + 0.2 * jax.random.normal(key_b, target.shape, jnp.float64)
        for alpha, diam in ((0.1, 1.0), (10 ** -1.5, 2.0)):
            absolute = sobolev_norm(pred, s, alpha=alpha, domain=diam, spacetime=True,
                                    torchcfd_compat=True)
            assert float(absolute) == pytest.approx(
                torchcfd_sobolev(np.asarray(pred), None, s, alpha, diam), rel=1e-12)
            relative = relative_sobolev(pred, target, s, alpha=alpha, domain=diam,
                                        spacetime=True, torchcfd_compat=True)
            assert float(relative) == pytest.approx(
                torchcfd_sobolev(np.asarray(pred), np.asarray(target), s, alpha, diam,
                                 relative=True), rel=1e-9)


def test_torchcfd_compat_by_hand():
    # One slice-constant wave: u = sin(2πx) on 8², T = 4 identical slices. Unnormalised
    # coefficients: two modes of |N û|² = (64/2)² = 1024 at |ξ|² = 4π². torch-cfd's "L2"
    # (s = 0) weights them by (α + 4π²); its s = -1 by (α + 4π²)^(-1/2); then / sqrt(T).
    with jax.enable_x64(True):
        grid = np.arange(8) / 8
        u = jnp.asarray((np.sin(2 * np.pi * grid)[:, None, None] * np.ones((8, 8, 4)))[None])
        alpha, xi_sq = 0.1, 4 * math.pi ** 2
        for s, weight in ((0.0, alpha + xi_sq), (-1.0, (alpha + xi_sq) ** -0.5)):
            expected = math.sqrt(4 * 2 * 1024 * weight) / 2
            value = sobolev_norm(u, s, alpha=alpha, spacetime=True, torchcfd_compat=True)
            assert float(value) == pytest.approx(expected, rel=1e-12)
        # Relative: a 10% error gives 0.1 / sqrt(T) whatever the weight.
        assert float(relative_sobolev(1.1 * u, u, 0.0, alpha=alpha, spacetime=True,
                                      torchcfd_compat=True)) == pytest.approx(0.05, rel=1e-9)


def test_compat_and_time_average_need_spacetime():
    u = jnp.ones((1, 4, 4, 2))
    with pytest.raises(ValueError, match="spacetime=True"):
        sobolev_norm(u, 0.0, torchcfd_compat=True)
    with pytest.raises(ValueError, match="spacetime=True"):
        sobolev_norm(u, 0.0, time_average=True)
    with pytest.raises(ValueError, match="spacetime=True"):
        relative_sobolev(u, u, 0.0, torchcfd_compat=True)


def test_defaults_unchanged():
    # alpha=1, spacetime=False is the original definition (1 + |ξ|²)^s, per channel.
    with jax.enable_x64(True):
        u = jnp.asarray(trajectory())
        assert float(sobolev_norm(u, 1.0)) == pytest.approx(
            float(sobolev_norm(u, 1.0, alpha=1.0, spacetime=True)), rel=1e-14)
