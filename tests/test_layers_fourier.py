"""Truncated FFTs and SpectralConv against naive full-spectrum references and analytic results."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nopx.layers import SpectralConv, kept_shape, truncated_irfftn, truncated_rfftn
from nopx.layers.fourier import axis_method, full_axis_frequencies

METHODS = ["fft", "dft"]
# (grid, n_modes): even/odd sizes and modes, every mode kept, Nyquist bin kept.
CASES = [((16,), (6,)), ((15,), (7,)), ((16, 12), (8, 6)), ((9, 7), (9, 7)), ((8, 8), (8, 8)),
         ((10, 9, 8), (6, 4, 5))]


def _kept_index(grid, n_modes):
    """Index into a full rfftn spectrum selecting the kept bins in storage order."""
    index = [full_axis_frequencies(m) % n for n, m in zip(grid[:-1], n_modes[:-1])]
    index.append(np.arange(n_modes[-1] // 2 + 1))
    return (slice(None), *np.ix_(*index), slice(None))


def naive_rfftn(x, n_modes, norm="forward"):
    """Full rfftn over the spatial axes, then keep the low modes."""
    grid = x.shape[1:-1]
    full = np.fft.rfftn(np.asarray(x, np.float64), axes=range(1, len(grid) + 1), norm=norm)
    return full[_kept_index(grid, n_modes)]


def naive_irfftn(coeffs, grid, n_modes, norm="forward"):
    """Scatter the kept bins into a zero full spectrum, then irfftn."""
    spectrum = np.zeros((coeffs.shape[0], *grid[:-1], grid[-1] // 2 + 1, coeffs.shape[-1]),
                        np.complex128)
    spectrum[_kept_index(grid, n_modes)] = coeffs
    return np.fft.irfftn(spectrum, s=grid, axes=range(1, len(grid) + 1), norm=norm)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("grid, n_modes", CASES)
def test_truncated_rfftn_equals_full_rfftn_then_slice(grid, n_modes, method):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, *grid, 3))
    coeffs = truncated_rfftn(x, n_modes, method=method)
    assert coeffs.shape == (2, *kept_shape(n_modes), 3)
    np.testing.assert_allclose(coeffs, naive_rfftn(x, n_modes), atol=2e-6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("grid, n_modes", CASES)
def test_truncated_irfftn_equals_zero_padded_irfftn(grid, n_modes, method):
    # Random complex coefficients: bin 0 / Nyquist are not real, so this also checks that
    # both paths apply irfft's Hermitian projection.
    shape = (2, *kept_shape(n_modes), 3)
    re, im = jax.random.normal(jax.random.PRNGKey(1), (2, *shape))
    coeffs = jax.lax.complex(re, im)
    out = truncated_irfftn(coeffs, grid, method=method)
    ref = naive_irfftn(np.asarray(coeffs), grid, n_modes)
    np.testing.assert_allclose(out, ref, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("norm", ["forward", "backward", "ortho"])
def test_norms_match_numpy(norm):
    x = jax.random.normal(jax.random.PRNGKey(2), (1, 12, 10, 2))
    n_modes = (6, 6)
    for method in METHODS:
        coeffs = truncated_rfftn(x, n_modes, norm=norm, method=method)
        ref = naive_rfftn(x, n_modes, norm)
        np.testing.assert_allclose(coeffs, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
        back = truncated_irfftn(coeffs, (12, 10), norm=norm, method=method)
        np.testing.assert_allclose(back, naive_irfftn(ref, (12, 10), n_modes, norm), atol=1e-5)


def test_auto_prefers_dft_for_few_modes_and_fft_for_many():
    assert axis_method(64, 16, "auto") == "dft"
    assert axis_method(1024, 513, "auto") == "fft"
    assert axis_method(64, 16, "fft") == "fft"


@pytest.mark.parametrize("grid, n_modes", [((7,), (8,)), ((8, 8), (10, 4))])
def test_too_coarse_grid_is_a_value_error(grid, n_modes):
    with pytest.raises(ValueError, match="too few"):
        truncated_rfftn(jnp.ones((1, *grid, 1)), n_modes)


def _wavenumbers(n_modes, domain):
    """Angular wavenumber along every axis at each kept bin, shaped like the kept block."""
    freqs = [full_axis_frequencies(m) for m in n_modes[:-1]] + [np.arange(n_modes[-1] // 2 + 1)]
    return np.meshgrid(*[2 * np.pi * f / domain for f in freqs], indexing="ij")


def _derivative_conv(n_modes, axis, channels, domain, dtype, transform):
    """SpectralConv set by hand to d/dx_axis: weight i·k_axis, identity over channels, no bias."""
    conv = SpectralConv(channels, channels, n_modes, bias=False, transform=transform,
                        param_dtype=dtype, rngs=nnx.Rngs(0))
    k = _wavenumbers(n_modes, domain)[axis]
    eye = np.eye(channels)
    conv.weight_real[...] = jnp.zeros(conv.weight_real.shape, dtype)
    conv.weight_imag[...] = jnp.asarray(k[..., None, None] * eye, dtype)
    return conv


def _field_and_gradient(grid, domain):
    """Two channels of band-limited sin/cos products and their exact partial derivatives."""
    coords = np.meshgrid(*[np.arange(n) * domain / n for n in grid], indexing="ij")
    w = 2 * np.pi / domain
    fields, grads = [], []
    for ks in [(1, 2, 1)[:len(grid)], (2, 1, 3)[:len(grid)]]:     # per channel: k per axis
        parts = [np.sin(w * k * c) if a % 2 == 0 else np.cos(w * k * c)
                 for a, (k, c) in enumerate(zip(ks, coords))]
        dparts = [w * k * np.cos(w * k * c) if a % 2 == 0 else -w * k * np.sin(w * k * c)
                  for a, (k, c) in enumerate(zip(ks, coords))]
        fields.append(np.prod(parts, axis=0) + 0.5)
        grads.append([np.prod(parts[:a] + [dparts[a]] + parts[a + 1:], axis=0)
                      for a in range(len(grid))])
    u = np.stack(fields, -1)[None]
    du = [np.stack([g[a] for g in grads], -1)[None] for a in range(len(grid))]
    return u, du


@pytest.mark.parametrize("transform", METHODS)
@pytest.mark.parametrize("grid, n_modes", [((32,), (12,)), ((32, 24), (12, 10)),
                                           ((16, 12, 16), (8, 8, 8))])
def test_spectral_conv_computes_exact_derivative(grid, n_modes, transform):
    domain = 2.0
    u, du = _field_and_gradient(grid, domain)
    for axis in range(len(grid)):
        conv = _derivative_conv(n_modes, axis, 2, domain, jnp.float32, transform)
        out = conv(jnp.asarray(u, jnp.float32))
        scale = np.abs(du[axis]).max()
        np.testing.assert_allclose(out, du[axis], atol=2e-5 * scale)


@pytest.mark.parametrize("transform", METHODS)
def test_spectral_conv_derivative_float64(transform):
    grid, n_modes, domain = (16, 12, 16), (8, 8, 8), 1.0
    with jax.enable_x64(True):
        u, du = _field_and_gradient(grid, domain)
        for axis in range(3):
            conv = _derivative_conv(n_modes, axis, 2, domain, jnp.float64, transform)
            out = conv(jnp.asarray(u, jnp.float64))
            assert out.dtype == jnp.float64
            np.testing.assert_allclose(out, du[axis], atol=1e-12 * np.abs(du[axis]).max())


def _band_limited(n, key):
    """A random real field on an n×n grid with frequencies |k| <= 3 on both axes."""
    x = np.arange(n) / n
    a, b = jax.random.normal(key, (2, 4, 4, 2))
    field = sum(a[p, q] * np.cos(2 * np.pi * (p * x[:, None] + q * x[None, :]))[..., None]
                + b[p, q] * np.sin(2 * np.pi * (p * x[:, None] - q * x[None, :]))[..., None]
                for p in range(4) for q in range(4))
    return jnp.asarray(field[None], jnp.float32)


@pytest.mark.parametrize("transform", METHODS)
def test_spectral_conv_is_resolution_invariant(transform):
    conv = SpectralConv(2, 3, (8, 8), transform=transform, rngs=nnx.Rngs(3))
    key = jax.random.PRNGKey(4)
    coarse, fine = conv(_band_limited(64, key)), conv(_band_limited(128, key))
    np.testing.assert_allclose(fine[:, ::2, ::2], coarse, atol=1e-5 * np.abs(coarse).max())
    # Super-resolution: evaluating the coarse input's output on the fine grid is the same.
    upsampled = conv(_band_limited(64, key), output_shape=(128, 128))
    np.testing.assert_allclose(upsampled, fine, atol=1e-5 * np.abs(fine).max())


def test_spectral_conv_matches_naive_reference_with_random_weights():
    conv = SpectralConv(3, 4, (6, 5), rngs=nnx.Rngs(5))
    x = jax.random.normal(jax.random.PRNGKey(6), (2, 12, 11, 3))
    coeffs = naive_rfftn(x, (6, 5))
    weight = np.asarray(conv.weight_real[...]) + 1j * np.asarray(conv.weight_imag[...])
    mixed = np.einsum("bxyi,xyio->bxyo", coeffs, weight)
    ref = naive_irfftn(mixed, (12, 11), (6, 5)) + np.asarray(conv.bias[...])
    np.testing.assert_allclose(conv(x), ref, atol=2e-5)


def test_spectral_conv_parameters_and_init():
    conv = SpectralConv(32, 32, (16, 16), rngs=nnx.Rngs(0))
    assert conv.weight_real.shape == conv.weight_imag.shape == (16, 9, 32, 32)
    assert conv.bias.shape == (32,)
    std = np.sqrt(2 / 64)
    complex_std = np.sqrt(np.var(conv.weight_real[...]) + np.var(conv.weight_imag[...]))
    assert abs(complex_std / std - 1) < 0.02
    assert SpectralConv(2, 2, (4,), bias=False, rngs=nnx.Rngs(0)).bias is None


@pytest.mark.parametrize("kwargs, message", [
    ({"n_modes": (16, 0)}, "n_modes"), ({"n_modes": 16}, "n_modes"),
    ({"n_modes": (2, 2, 2, 2)}, "n_modes"), ({"in_channels": 0}, "in_channels"),
    ({"fft_norm": "none"}, "fft_norm"), ({"transform": "fast"}, "transform")])
def test_spectral_conv_rejects_bad_arguments(kwargs, message):
    args = {"in_channels": 2, "out_channels": 2, "n_modes": (4, 4), **kwargs}
    with pytest.raises(ValueError, match=message):
        SpectralConv(**args, rngs=nnx.Rngs(0))


def test_spectral_conv_rejects_wrong_input_shape():
    conv = SpectralConv(2, 2, (4, 4), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="2 channels"):
        conv(jnp.ones((1, 8, 8, 3)))
