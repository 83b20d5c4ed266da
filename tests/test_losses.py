"""Losses against hand computations and analytic Sobolev norms (float64 where it matters)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nopx.losses import h1, relative_lp, relative_sobolev, sobolev_norm


def test_relative_lp_by_hand():
    target = jnp.array([[3.0, 4.0], [1.0, 0.0]]).reshape(2, 2, 1)       # norms 5 and 1
    pred = target + jnp.array([[0.0, 1.0], [0.0, 2.0]]).reshape(2, 2, 1)  # errors 1 and 2
    assert float(relative_lp(pred, target)) == pytest.approx((1 / 5 + 2 / 1) / 2, rel=1e-6)
    # p = 1: |e|_1 / |y|_1 = 1/7 and 2/1.
    assert float(relative_lp(pred, target, p=1)) == pytest.approx((1 / 7 + 2) / 2, rel=1e-6)
    # p = 3 on the first sample only.
    expected = 1 / (27 + 64) ** (1 / 3)
    assert float(relative_lp(pred[:1], target[:1], p=3)) == pytest.approx(expected, rel=1e-6)


def test_relative_lp_is_per_channel_then_averaged():
    target = jnp.stack([jnp.ones((4, 4)), 100 * jnp.ones((4, 4))], -1)[None]   # (1, 4, 4, 2)
    pred = target.at[..., 0].add(1.0)                                          # channel 0: 100%
    assert float(relative_lp(pred, target)) == pytest.approx(0.5, rel=1e-6)
    assert float(relative_lp(jnp.zeros((1, 3, 1)), jnp.zeros((1, 3, 1)))) == 0.0   # eps guard


def _h1_reference(pred, target, lengths):
    """Independent numpy version: per (sample, channel) sums with np.roll differences."""
    def terms(v):
        total = (v ** 2).sum(axis=tuple(range(1, v.ndim - 1)))
        for axis, length in enumerate(lengths, start=1):
            h = length / v.shape[axis]
            d = (np.roll(v, -1, axis) - np.roll(v, 1, axis)) / (2 * h)
            total = total + (d ** 2).sum(axis=tuple(range(1, v.ndim - 1)))
        return total
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    return np.mean(np.sqrt(terms(pred - target)) / np.sqrt(terms(target)))


@pytest.mark.parametrize("shape, domain", [((3, 16, 2), 1.0), ((2, 8, 12, 1), (2.0, 1.0)),
                                           ((1, 6, 5, 4, 2), 1.0)])
def test_h1_matches_reference(shape, domain):
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    target = jax.random.normal(key_a, shape)
    pred = target + 0.3 * jax.random.normal(key_b, shape)
    lengths = [domain] * (len(shape) - 2) if isinstance(domain, float) else list(domain)
    assert float(h1(pred, target, domain=domain)) == pytest.approx(
        _h1_reference(pred, target, lengths), rel=1e-5)


def test_h1_by_hand_on_a_sine():
    n = 8
    x = np.arange(n) / n
    target = jnp.asarray(np.sin(2 * np.pi * x))[None, :, None]
    # Central difference of sin(2πx) is sin(2πh)/h · cos(2πx): an offset e = c has no
    # derivative, so h1 = sqrt(n c²) / sqrt(n/2 + n/2 · (sin(2πh)/h)²).
    h = 1 / n
    expected = math.sqrt(n * 0.25) / math.sqrt(n / 2 + n / 2 * (math.sin(2 * math.pi * h) / h) ** 2)
    assert float(h1(target + 0.5, target)) == pytest.approx(expected, rel=1e-5)
    assert float(h1(target + 0.5, target, domain=2.0)) > expected     # smaller slopes, same e


def _grid(shape, lengths):
    return np.meshgrid(*[np.arange(n) * length / n for n, length in zip(shape, lengths)],
                       indexing="ij")


@pytest.mark.parametrize("s", [-1.0, 0.0, 1.0, 2.0, 0.5])
def test_sobolev_norm_of_sin_cos_product(s):
    with jax.enable_x64(True):
        x, y = _grid((32, 16), (1.0, 1.0))
        u = np.sin(2 * np.pi * x) * np.cos(4 * np.pi * y)
        # Modes (±1, ±2): |û|² = 1/16 each, |ξ|² = 4π²(1 + 4), so ‖u‖² = (1/4)(1 + 20π²)^s.
        expected = math.sqrt(0.25 * (1 + 20 * math.pi ** 2) ** s)
        value = sobolev_norm(jnp.asarray(u)[None, ..., None], s)
        assert value.dtype == jnp.float64
        assert float(value) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("s", [-1.0, 0.0, 1.0, 2.0])
def test_sobolev_norm_on_a_rectangle_with_a_mean(s):
    lengths = (2.0, 0.5, 1.0)
    with jax.enable_x64(True):
        x, y, z = _grid((12, 8, 10), lengths)
        wave = np.cos(2 * np.pi * x / 2.0) * np.sin(2 * np.pi * 2 * y / 0.5)
        u = 3.0 + wave * np.cos(2 * np.pi * z)
        area = math.prod(lengths)
        xi_sq = (2 * math.pi) ** 2 * ((1 / 2.0) ** 2 + (2 / 0.5) ** 2 + 1)
        # Mean: weight 1, |û_0|² = 9. Product of three waves: 8 modes of |û|² = 1/64.
        expected = math.sqrt(area * (9 + 0.125 * (1 + xi_sq) ** s))
        value = sobolev_norm(jnp.asarray(u)[None, ..., None], s, domain=lengths)
        assert float(value) == pytest.approx(expected, rel=1e-12)


def test_sobolev_s0_is_the_quadrature_l2_norm_batch_mean_and_channels_together():
    with jax.enable_x64(True):
        u = jax.random.normal(jax.random.PRNGKey(1), (3, 9, 10, 2))   # odd and even sizes
        domain = (1.5, 2.0)
        per_sample = np.sqrt(np.sum(np.asarray(u) ** 2, axis=(1, 2, 3)) * 3.0 / 90)
        assert float(sobolev_norm(u, 0.0, domain=domain)) == pytest.approx(per_sample.mean(),
                                                                           rel=1e-12)


def test_sobolev_norm_counts_the_nyquist_bin_once():
    with jax.enable_x64(True):
        u = jnp.asarray((-1.0) ** np.arange(8))[None, :, None]            # pure Nyquist mode
        assert float(sobolev_norm(u, 0.0)) == pytest.approx(1.0, rel=1e-12)
        assert float(sobolev_norm(u, 1.0)) == pytest.approx(math.sqrt(1 + (8 * math.pi) ** 2),
                                                            rel=1e-12)


def test_relative_sobolev():
    with jax.enable_x64(True):
        x, y = _grid((16, 16), (1.0, 1.0))
        target = np.sin(2 * np.pi * x) + 0 * y                            # |ξ|² = 4π²
        error = 0.1 * np.cos(2 * np.pi * 3 * y) + 0 * x                  # |ξ|² = 36π²
        for s in (-1.0, 0.0, 1.0):
            error_norm = 0.1 * math.sqrt(0.5 * (1 + 36 * math.pi ** 2) ** s)
            target_norm = math.sqrt(0.5 * (1 + 4 * math.pi ** 2) ** s)
            value = relative_sobolev(jnp.asarray(target + error)[None, ..., None],
                                     jnp.asarray(target)[None, ..., None], s)
            assert float(value) == pytest.approx(error_norm / (target_norm + 1e-8), rel=1e-12)


def test_losses_are_differentiable_and_jittable():
    pred = jax.random.normal(jax.random.PRNGKey(2), (2, 8, 8, 1))
    target = jnp.cos(pred)
    for loss in (relative_lp, h1, lambda a, b: relative_sobolev(a, b, -1.0)):
        value, grad = jax.jit(jax.value_and_grad(loss))(pred, target)
        assert value.shape == () and bool(jnp.isfinite(grad).all())


def test_bad_domain_is_a_value_error():
    with pytest.raises(ValueError, match="domain"):
        sobolev_norm(jnp.ones((1, 4, 4, 1)), 1.0, domain=(1.0,))
    with pytest.raises(ValueError, match="spatial"):
        h1(jnp.ones((4, 1)), jnp.ones((4, 1)))
