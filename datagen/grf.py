r"""Gaussian random fields in the cosine basis: the FNO Darcy ``GRF.m`` recipe.

A sample is the Karhunen–Loève sum over the eigenfunctions of the Neumann Laplacian on
``(0, 1)^2``,

.. math::

    g(x, y) = \sum_{k_1, k_2 < K} \sqrt{\lambda_k}\, \xi_k\, \phi_{k_1}(x) \phi_{k_2}(y),
    \qquad \sqrt{\lambda_k} = \tau^{\alpha - 1} (\pi^2 (k_1^2 + k_2^2) + \tau^2)^{-\alpha / 2},

with ``φ_0 = 1``, ``φ_k(x) = √2 cos(π k x)``, ``ξ_k ~ N(0, 1)`` and the mean mode
``λ_0`` set to zero: the covariance is ``τ^{2α-2} (-Δ + τ²)^{-α}`` (``9 (-Δ + 9)^{-2}``
for the defaults α = 2, τ = 3). With ``K = n`` and the field read at the ``n`` cell
centres this is exactly ``GRF.m``'s ``s · idct2(L .* ξ)``.

A sample is defined by its ``K × K`` coefficient block ``ξ``, drawn from
``np.random.default_rng([seed, index])``, not by a grid: the same ``(seed, index)`` gives
the same function on every grid, which zero-shot super-resolution evaluation relies on.

>>> grf = CosineGRF(modes=16)
>>> coarse, fine = grf.sample(0, 7, 32), grf.sample(0, 7, 96)
>>> bool(np.allclose(coarse, fine[1::3, 1::3]))  # the 32-grid centres are 96-grid centres
True
>>> bool(abs(coarse.mean()) < 1e-12)  # no mean mode
True
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nopx.datagen.grid import cell_centres

__all__ = ["CosineGRF", "cosine_basis"]


def cosine_basis(x: np.ndarray, modes: int) -> np.ndarray:
    """Orthonormal Neumann eigenfunctions ``φ_k(x)``, ``k < modes``, at points ``x`` in ``[0, 1]``.

    Returns shape ``(len(x), modes)``: column 0 is 1, column ``k`` is ``√2 cos(π k x)``.

    >>> cosine_basis(np.array([0.0, 0.5]), 3).round(6)
    array([[ 1.      ,  1.414214,  1.414214],
           [ 1.      ,  0.      , -1.414214]])
    """
    k = np.arange(modes)
    return np.where(k == 0, 1.0, np.sqrt(2.0)) * np.cos(np.pi * np.outer(x, k))


@dataclasses.dataclass(frozen=True)
class CosineGRF:
    """Zero-mean GRF with covariance ``τ^{2α-d} (-Δ + τ²)^{-α}`` (Neumann), truncated to ``modes^d`` terms.

    Args:
      alpha: smoothness; larger is smoother. Needs ``alpha > d/2`` for a finite variance.
      tau: inverse correlation length; larger gives finer features.
      modes: ``K``, the number of cosine modes per axis kept (and drawn per sample).
      ndim: ``d``, the dimension of the domain ``(0, 1)^d`` (2 or 3).

    Good values: the FNO Darcy fields use ``alpha=2, tau=3`` (pointwise standard deviation
    about 0.27); ``modes=32`` drops only terms below 1e-3 of the largest (``√λ`` decays
    like ``|k|^{-α}``). In 3-D, ``modes=16`` keeps ``16³ = 4096`` terms, enough for ``alpha=2``.
    """

    alpha: float = 2.0
    tau: float = 3.0
    modes: int = 32
    ndim: int = 2

    def sqrt_eigenvalues(self) -> np.ndarray:
        """``√λ_k`` for ``k_1, ..., k_d < modes``, shape ``(modes,) * d``, with ``√λ_0 = 0``."""
        k2 = sum(np.ix_(*[np.arange(self.modes) ** 2] * self.ndim))
        sqrt_eig = self.tau ** (self.alpha - self.ndim / 2) * (np.pi**2 * k2 + self.tau**2) ** (-self.alpha / 2)
        sqrt_eig[(0,) * self.ndim] = 0.0
        return sqrt_eig

    def coefficients(self, seed: int, index: int) -> np.ndarray:
        """The standard-normal KL coefficients ``ξ`` of sample ``index``, shape ``(modes,) * d``."""
        return np.random.default_rng([seed, index]).standard_normal((self.modes,) * self.ndim)

    def evaluate(self, xi: np.ndarray, *axes: np.ndarray) -> np.ndarray:
        """The field with coefficients ``xi`` on the tensor grid ``axes[0] × ... × axes[d-1]``.

        Returns shape ``(len(axes[0]), ..., len(axes[d-1]))``.
        """
        field = self.sqrt_eigenvalues() * xi
        # Contract one axis at a time; each contraction moves the new point axis to the back.
        for points in axes:
            field = np.tensordot(field, cosine_basis(points, self.modes), axes=([0], [1]))
        return field

    def synthesize(self, xi: np.ndarray, n: int) -> np.ndarray:
        """The field with coefficients ``xi`` at the cell centres of an ``n^d`` grid, shape ``(n,) * d``."""
        return self.evaluate(xi, *[cell_centres(n)] * self.ndim)

    def sample(self, seed: int, index: int, n: int) -> np.ndarray:
        """Sample ``index`` of stream ``seed`` on the ``n^d`` cell-centred grid, shape ``(n,) * d``."""
        return self.synthesize(self.coefficients(seed, index), n)
