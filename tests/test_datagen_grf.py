"""Cosine-basis GRF: the FNO GRF.m recipe, resolution independence, statistics."""

import numpy as np
import pytest
from scipy.fft import idctn

from nopx.datagen.grf import CosineGRF, cosine_basis
from nopx.datagen.grid import cell_centres


@pytest.mark.parametrize("ratio", [3, 5])
def test_sample_is_the_same_function_on_every_grid(ratio):
    grf = CosineGRF()
    coarse = grf.sample(seed=4, index=11, n=24)
    fine = grf.sample(seed=4, index=11, n=24 * ratio)
    # For an odd ratio the coarse cell centres are fine cell centres.
    middle = ratio // 2
    np.testing.assert_allclose(coarse, fine[middle::ratio, middle::ratio], rtol=0, atol=1e-13)


def test_even_refinement_agrees_at_the_coarse_cell_centres():
    grf = CosineGRF()
    xi = grf.coefficients(0, 3)
    coarse = grf.synthesize(xi, 64)
    np.testing.assert_array_equal(coarse, grf.evaluate(xi, cell_centres(64), cell_centres(64)))
    fine = grf.synthesize(xi, 128)
    # The fine grid's 2x2 block averages approximate the coarse values (second order).
    blocks = fine.reshape(64, 2, 64, 2).mean(axis=(1, 3))
    assert np.abs(blocks - coarse).max() < 1e-2 * np.abs(coarse).max()


def test_matches_fno_grf_m_when_modes_equal_grid():
    """GRF.m: U = idct2(s * sqrt_eig .* xi) (orthonormal, MATLAB) with the mean mode zeroed."""
    n = 32
    grf = CosineGRF(alpha=2.0, tau=3.0, modes=n)
    xi = grf.coefficients(1, 2)
    expected = n * idctn(grf.sqrt_eigenvalues() * xi, type=2, norm="ortho")
    np.testing.assert_allclose(grf.synthesize(xi, n), expected, atol=1e-12)


def test_samples_depend_only_on_seed_and_index():
    grf = CosineGRF(modes=8)
    np.testing.assert_array_equal(grf.sample(0, 5, 16), grf.sample(0, 5, 16))
    assert not np.allclose(grf.sample(0, 5, 16), grf.sample(0, 6, 16))
    assert not np.allclose(grf.sample(0, 5, 16), grf.sample(1, 5, 16))


def test_zero_mean_and_pointwise_variance():
    grf = CosineGRF(modes=16)
    samples = np.stack([grf.sample(7, i, 8) for i in range(4000)])
    np.testing.assert_allclose(samples.mean(axis=(1, 2)), 0, atol=1e-12)
    basis = cosine_basis(cell_centres(8), 16)
    expected = np.einsum("ik,jl,kl->ij", basis**2, basis**2, grf.sqrt_eigenvalues() ** 2)
    np.testing.assert_allclose(samples.var(axis=0), expected, rtol=0.1)


def test_cosine_basis_is_orthonormal_at_cell_centres():
    basis = cosine_basis(cell_centres(40), 12)
    np.testing.assert_allclose(basis.T @ basis / 40, np.eye(12), atol=1e-12)
