r"""A user-defined PDE family, found by name from a recipe's ``imports:``.

.. math::

    -\Delta u + \kappa(x)\, u = 1 \quad \text{on } (0, 1)^2, \qquad u = 0 \text{ on } \partial\Omega,

the screened Poisson (reaction–diffusion) equation with a random reaction coefficient
``κ = scale · exp(g)``, ``g`` a Gaussian random field. Learn ``κ ↦ u``. Registered as
``screened_poisson``: built from ``nopx.datagen``'s grid, stencil and random-field parts.

>>> from nopx.datagen.grid import CellGrid
>>> family = ScreenedPoisson(ScreenedPoissonConfig(), grid=CellGrid(n=8, ndim=2), seed=0)
>>> problem = family.problem(0)
>>> problem.matrix.shape, sorted(problem.inputs)
((64, 64), ['kappa'])
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from nopx.datagen.family import Problem, register_family
from nopx.datagen.grf import CosineGRF
from nopx.datagen.grid import CellGrid
from nopx.datagen.stencil import diffusion_matrix


@dataclasses.dataclass(frozen=True)
class ScreenedPoissonConfig:
    """The ``screened_poisson:`` section of a recipe.

    Good values: ``scale`` 10–1000 (from diffusion- to reaction-dominated), ``alpha=2``,
    ``tau=3`` (the FNO Darcy field's smoothness), ``modes=16``.
    """

    scale: float = 100.0
    alpha: float = 2.0
    tau: float = 3.0
    modes: int = 16

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError(f"scale: must be positive, got {self.scale}")


@register_family
class ScreenedPoisson:
    """``-Δu + κu = 1`` with zero Dirichlet data; fields ``kappa`` and ``u``, ``(n, n)``."""

    name: ClassVar[str] = "screened_poisson"
    config_type: ClassVar[type] = ScreenedPoissonConfig
    fields: ClassVar[tuple[str, ...]] = ("kappa", "u")
    ndim: ClassVar[int] = 2

    def __init__(self, config: ScreenedPoissonConfig, *, grid: CellGrid, seed: int) -> None:
        self.config = config
        self.grid = grid
        self.seed = seed
        self.field = CosineGRF(config.alpha, config.tau, config.modes, ndim=2)
        self.laplacian = diffusion_matrix(np.ones(grid.shape), grid.length)

    @property
    def n_params(self) -> int:
        return self.config.modes ** 2

    def problem(self, index: int) -> Problem:
        xi = self.field.coefficients(self.seed, index)
        kappa = self.config.scale * np.exp(self.field.synthesize(xi, self.grid.n))
        matrix = (self.laplacian + sp.diags(kappa.ravel())).tocsc()
        return Problem(matrix=matrix, rhs=np.ones(kappa.size), inputs={"kappa": kappa},
                       params=xi.ravel())

    def fields_of(self, problem: Problem, solution: np.ndarray) -> dict[str, np.ndarray]:
        return {**problem.inputs, "u": solution.reshape(self.grid.shape)}
