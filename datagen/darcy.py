r"""2-D Darcy flow with a random coefficient: the FNO Darcy benchmark family.

.. math::

    -\nabla \cdot (a(x) \nabla u(x)) = f \quad \text{on } (0, 1)^2, \qquad u = 0 \text{ on } \partial\Omega.

>>> darcy = Darcy2D(DarcyConfig(modes=8), grid=CellGrid(n=16, ndim=2), seed=0)
>>> problem = darcy.problem(3)
>>> sorted(np.unique(problem.inputs["a"]))
[np.float64(3.0), np.float64(12.0)]
>>> problem.matrix.shape, problem.params.shape
((256, 256), (64,))
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from nopx.datagen.family import Problem, register_family
from nopx.datagen.grf import CosineGRF
from nopx.datagen.grid import CellGrid
from nopx.datagen.stencil import diffusion_matrix

__all__ = ["Darcy2D", "DarcyConfig"]


@dataclasses.dataclass(frozen=True)
class DarcyConfig:
    """The ``darcy:`` section of a recipe; see :class:`Darcy2D` for the meaning of each key."""

    coefficient: Literal["piecewise_constant", "lognormal"] = "piecewise_constant"
    alpha: float = 2.0
    tau: float = 3.0
    modes: int = 32
    high: float = 12.0
    low: float = 3.0
    source: float = 1.0

    def __post_init__(self) -> None:
        if self.alpha <= 1:
            raise ValueError(f"alpha: must be > 1 for a field with finite variance, got {self.alpha}")
        if self.tau <= 0:
            raise ValueError(f"tau: must be positive, got {self.tau}")
        if self.modes < 2:
            raise ValueError(f"modes: need at least 2 cosine modes per axis, got {self.modes}")
        for key in ("low", "high"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key}: the coefficient must be positive, got {getattr(self, key)}")
        if not np.isfinite(self.source) or self.source == 0:
            raise ValueError(f"source: must be a nonzero number, got {self.source}")


@register_family
class Darcy2D:
    r"""Darcy flow ``-∇·(a ∇u) = f`` on the unit square, ``u = 0`` on the boundary.

    The coefficient ``a`` comes from a cosine-basis GRF ``g``
    (:class:`~nopx.datagen.grf.CosineGRF`, covariance ``τ^{2α-2} (-Δ + τ²)^{-α}``); the
    source is a constant. The PDE is discretised by the cell-centred 5-point finite-volume
    stencil of :func:`~nopx.datagen.stencil.diffusion_matrix` (arithmetic face averages,
    ghost-cell Dirichlet boundary): symmetric positive definite, second-order accurate.

    Parameters (the recipe's ``darcy:`` section, :class:`DarcyConfig`):
      coefficient: ``piecewise_constant``: ``a = high`` where ``g ≥ 0``, ``low`` where
        ``g < 0`` (FNO: ``ψ#N(0, (-Δ + 9I)^{-2})``, ψ = 12/3); ``lognormal``: ``a = exp(g)``.
      alpha, tau: smoothness and inverse correlation length of ``g``.
      modes: ``K``; ``g`` is a sum of ``K × K`` cosine modes.
      high, low: the two values of the piecewise-constant coefficient (positive).
      source: the constant ``f``.

    Args:
      config: the parameters above.
      grid: the cell-centred solve grid (``ndim = 2``).
      seed: the dataset seed; sample ``i`` draws its KL coefficients from
        ``default_rng([seed, i])``.

    Stored fields: ``a`` and ``u`` at the cell centres, each ``(n, n)`` before subsampling.
    ``meta/params`` holds the sample's standard-normal KL coefficients ``ξ``, flattened
    row-major from ``(modes, modes)`` (``ξ[k1, k2]`` at ``k1 * modes + k2``; ``ξ[0, 0]`` is
    drawn but unused), which with ``alpha``, ``tau`` define the coefficient on any grid.

    Good values: the FNO benchmark is ``piecewise_constant`` 12/3, ``alpha=2``, ``tau=3``,
    ``source=1``, solved at 421 and stored at 85 (``subsample=5``), 1000 train + 100 test;
    ``n=64`` or ``128`` with ``subsample=1`` is a cheap stand-in with the same coefficient
    statistics. ``u`` peaks around 0.013 for these values. ``lognormal`` with the default
    GRF gives ``a`` within about 0.5–2, a mild contrast. The contrast ``high / low`` sets
    the conditioning of the matrix (and the iteration counts of Krylov solvers).
    """

    name: ClassVar[str] = "darcy"
    config_type: ClassVar[type] = DarcyConfig
    fields: ClassVar[tuple[str, ...]] = ("a", "u")
    ndim: ClassVar[int] = 2

    def __init__(self, config: DarcyConfig, *, grid: CellGrid, seed: int) -> None:
        self.config = config
        self.grid = grid
        self.seed = seed
        self.grf = CosineGRF(alpha=config.alpha, tau=config.tau, modes=config.modes)

    @property
    def n_params(self) -> int:
        return self.config.modes**2

    def coefficient(self, xi: np.ndarray) -> np.ndarray:
        """The coefficient ``a`` for KL coefficients ``xi``, shape ``(n, n)``."""
        g = self.grf.synthesize(xi, self.grid.n)
        if self.config.coefficient == "lognormal":
            return np.exp(g)
        return np.where(g >= 0, self.config.high, self.config.low)

    def assemble(self, a: np.ndarray) -> tuple[sp.csc_matrix, np.ndarray]:
        """The system ``A u = b`` for the coefficient ``a`` ``(n, n)``: ``A`` ``(n², n²)``, ``b`` ``(n²,)``."""
        matrix = diffusion_matrix(a, self.grid.length)
        return matrix, np.full(a.size, self.config.source)

    def problem(self, index: int) -> Problem:
        xi = self.grf.coefficients(self.seed, index)
        a = self.coefficient(xi)
        matrix, rhs = self.assemble(a)
        return Problem(matrix=matrix, rhs=rhs, inputs={"a": a}, params=xi.ravel())

    def fields_of(self, problem: Problem, solution: np.ndarray) -> dict[str, np.ndarray]:
        return {"a": problem.inputs["a"], "u": solution.reshape(self.grid.shape)}
