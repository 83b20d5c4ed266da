r"""The variable-coefficient Helmholtz equation, genuinely indefinite.

.. math::

    -\nabla \cdot (a(x) \nabla u) - k^2 u = f \quad \text{on } (0, 1)^2, \qquad u = 0 \text{ on } \partial\Omega.

With ``k² ∈ [150, 250]`` (default) and ``a`` of order one, ``k²`` exceeds the smallest
eigenvalues of ``-∇·(a∇)`` (``2π² ≈ 19.7`` for ``a = 1``): the matrix is symmetric with
several negative eigenvalues. CG and plain AMG fail on it; a direct ``LDLᵀ``/``LU`` or a
Krylov method with recycling is needed (SKR's Helmholtz had ``k ≤ 1``: positive definite).

>>> helmholtz = Helmholtz2D(HelmholtzConfig(), grid=CellGrid(n=16, ndim=2), seed=0)
>>> problem = helmholtz.problem(0)
>>> 150 <= problem.params[-1] <= 250, bool(np.linalg.eigvalsh(problem.matrix.toarray()).min() < 0)
(np.True_, True)
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from nopx.datagen.family import Problem, register_family
from nopx.datagen.grid import CellGrid
from nopx.datagen.smooth import SmoothLogField
from nopx.datagen.stencil import diffusion_matrix

__all__ = ["Helmholtz2D", "HelmholtzConfig"]


@dataclasses.dataclass(frozen=True)
class HelmholtzConfig:
    """The ``helmholtz:`` section of a recipe; see :class:`Helmholtz2D`."""

    k2_min: float = 150.0
    k2_max: float = 250.0
    terms: int = 4
    amplitude: float = 0.5
    source: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.k2_min <= self.k2_max:
            raise ValueError(f"k2_min: need 0 <= k2_min <= k2_max, got {self.k2_min}, {self.k2_max}")
        SmoothLogField(terms=self.terms, amplitude=self.amplitude)
        if not np.isfinite(self.source) or self.source == 0:
            raise ValueError(f"source: must be a nonzero number, got {self.source}")


@register_family
class Helmholtz2D:
    r"""Helmholtz ``-∇·(a ∇u) - k² u = f`` on the unit square, ``u = 0`` on the boundary.

    ``a = exp(Σ_j θ_j ψ_j)`` is the smooth few-parameter coefficient of
    :class:`~nopx.datagen.smooth.SmoothLogField` (``θ ~ U(-amplitude, amplitude)^terms``),
    ``k² ~ U(k2_min, k2_max)`` per sample, ``f`` a constant. Discretised by the 5-point
    finite-volume stencil minus ``k² I``: symmetric indefinite, second-order accurate.

    Parameters (the recipe's ``helmholtz:`` section, :class:`HelmholtzConfig`):
      k2_min, k2_max: the range of ``k²``.
      terms, amplitude: the coefficient's modes and the range of ``θ``.
      source: the constant ``f``.

    Stored fields: ``a`` and ``u``, ``(n, n)`` before subsampling. ``meta/params``: ``θ``
    then ``k²``, ``(terms + 1,)``.

    Good values: ``k²`` 150–250 (the default, the reference measurement's family) puts 5 to
    10 eigenvalues below zero; resolve the wavelength ``2π/k`` with at least 10 cells
    (``n ≥ 10 k / 2π``, so ``n ≥ 64`` for ``k² ≤ 1600``). Keep ``k²`` off the Dirichlet
    eigenvalues of ``-∇·(a∇)`` (resonance makes ``u`` large and the matrix near-singular):
    a random ``k²`` hits one rarely, and the runner's residual check catches it.
    """

    name: ClassVar[str] = "helmholtz"
    config_type: ClassVar[type] = HelmholtzConfig
    fields: ClassVar[tuple[str, ...]] = ("a", "u")
    ndim: ClassVar[int] = 2

    def __init__(self, config: HelmholtzConfig, *, grid: CellGrid, seed: int) -> None:
        self.config = config
        self.grid = grid
        self.seed = seed
        self.smooth = SmoothLogField(terms=config.terms, amplitude=config.amplitude)

    @property
    def n_params(self) -> int:
        return self.config.terms + 1

    def parameters(self, index: int) -> np.ndarray:
        """``θ`` then ``k²`` of sample ``index``, ``(terms + 1,)``."""
        rng = np.random.default_rng([self.seed, index])
        theta = self.smooth.coefficients(rng)
        return np.append(theta, rng.uniform(self.config.k2_min, self.config.k2_max))

    def features(self, index: int) -> np.ndarray:
        """``θ / amplitude`` and ``k²`` scaled to ``[0, 1]``: both parameters weigh alike in sorting."""
        params = self.parameters(index)
        span = max(self.config.k2_max - self.config.k2_min, 1e-12)
        return np.append(params[:-1] / self.config.amplitude, (params[-1] - self.config.k2_min) / span)

    def assemble(self, a: np.ndarray, k2: float) -> tuple[sp.csc_matrix, np.ndarray]:
        """The system for coefficient ``a`` ``(n, n)`` and ``k²``: ``A`` ``(n², n²)``, ``b`` ``(n²,)``."""
        return diffusion_matrix(a, self.grid.length, shift=k2), np.full(a.size, self.config.source)

    def problem(self, index: int) -> Problem:
        params = self.parameters(index)
        a = np.exp(self.smooth.evaluate(params[:-1], self.grid.n))
        matrix, rhs = self.assemble(a, params[-1])
        return Problem(matrix=matrix, rhs=rhs, inputs={"a": a}, params=params)

    def fields_of(self, problem: Problem, solution: np.ndarray) -> dict[str, np.ndarray]:
        return {"a": problem.inputs["a"], "u": solution.reshape(self.grid.shape)}
