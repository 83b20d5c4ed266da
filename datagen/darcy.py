r"""Darcy flow with a random coefficient in 2-D (the FNO Darcy benchmark family) and 3-D.

.. math::

    -\nabla \cdot (a(x) \nabla u(x)) = f \quad \text{on } (0, 1)^d, \qquad u = 0 \text{ on } \partial\Omega.

>>> darcy = Darcy2D(DarcyConfig(modes=8), grid=CellGrid(n=16, ndim=2), seed=0)
>>> problem = darcy.problem(3)
>>> sorted(np.unique(problem.inputs["a"]))
[np.float64(3.0), np.float64(12.0)]
>>> problem.matrix.shape, problem.params.shape
((256, 256), (64,))
>>> Darcy3D(Darcy3DConfig(modes=4), grid=CellGrid(n=6, ndim=3), seed=0).problem(0).matrix.shape
(216, 216)
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from nopx.datagen.family import Problem, register_family
from nopx.datagen.grf import CosineGRF
from nopx.datagen.grid import CellGrid
from nopx.datagen.smooth import SmoothLogField
from nopx.datagen.stencil import diffusion_matrix

__all__ = ["Darcy2D", "DarcyConfig", "Darcy3D", "Darcy3DConfig"]

#: Sorting features of a GRF coefficient: its KL terms with ``k_d < FEATURE_MODES`` on every axis.
FEATURE_MODES = 6


@dataclasses.dataclass(frozen=True)
class DarcyConfig:
    """The ``darcy:`` section of a recipe; see :class:`Darcy2D` for the meaning of each key."""

    coefficient: Literal["piecewise_constant", "lognormal", "smooth"] = "piecewise_constant"
    alpha: float = 2.0
    tau: float = 3.0
    modes: int = 32
    high: float = 12.0
    low: float = 3.0
    source: float = 1.0
    terms: int = 4
    amplitude: float = 1.0

    def __post_init__(self) -> None:
        SmoothLogField(terms=self.terms, amplitude=self.amplitude)
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
        ``g < 0`` (FNO: ``ψ#N(0, (-Δ + 9I)^{-2})``, ψ = 12/3); ``lognormal``: ``a = exp(g)``;
        ``smooth``: ``a = exp(Σ_j θ_j ψ_j)``, ``terms`` fixed low-frequency modes
        (:class:`~nopx.datagen.smooth.SmoothLogField`), ``θ ~ U(-amplitude, amplitude)^terms``:
        a few-parameter family with near neighbours, where sorting a sequence matters.
      alpha, tau: smoothness and inverse correlation length of ``g``.
      modes: ``K``; ``g`` is a sum of ``K × K`` cosine modes.
      high, low: the two values of the piecewise-constant coefficient (positive).
      source: the constant ``f``.
      terms, amplitude: the ``smooth`` coefficient's number of modes and range of ``θ``.

    Args:
      config: the parameters above.
      grid: the cell-centred solve grid (``ndim = 2``).
      seed: the dataset seed; sample ``i`` draws its KL coefficients from
        ``default_rng([seed, i])``.

    Stored fields: ``a`` and ``u`` at the cell centres, each ``(n, n)`` before subsampling.
    ``meta/params`` holds the sample's standard-normal KL coefficients ``ξ``, flattened
    row-major from ``(modes, modes)`` (``ξ[k1, k2]`` at ``k1 * modes + k2``; ``ξ[0, 0]`` is
    drawn but unused), which with ``alpha``, ``tau`` define the coefficient on any grid; for
    ``smooth`` it holds ``θ`` ``(terms,)``.

    Good values: the FNO benchmark is ``piecewise_constant`` 12/3, ``alpha=2``, ``tau=3``,
    ``source=1``, solved at 421 and stored at 85 (``subsample=5``), 1000 train + 100 test;
    ``n=64`` or ``128`` with ``subsample=1`` is a cheap stand-in with the same coefficient
    statistics. ``u`` peaks around 0.013 for these values. ``lognormal`` with the default
    GRF gives ``a`` within about 0.5–2, a mild contrast. The contrast ``high / low`` sets
    the conditioning of the matrix (and the iteration counts of Krylov solvers). ``smooth``
    with 4 terms and amplitude 1 (the reference measurement's family) spans contrasts up to
    about e⁴ across the domain.
    """

    name: ClassVar[str] = "darcy"
    config_type: ClassVar[type] = DarcyConfig
    fields: ClassVar[tuple[str, ...]] = ("a", "u")
    ndim: ClassVar[int] = 2

    def __init__(self, config: DarcyConfig, *, grid: CellGrid, seed: int) -> None:
        self.config = config
        self.grid = grid
        self.seed = seed
        self.grf = CosineGRF(alpha=config.alpha, tau=config.tau, modes=config.modes, ndim=self.ndim)
        self.smooth = SmoothLogField(terms=config.terms, amplitude=config.amplitude, ndim=self.ndim)

    @property
    def n_params(self) -> int:
        return self.config.terms if self.config.coefficient == "smooth" else self.config.modes**self.ndim

    def parameters(self, index: int) -> np.ndarray:
        """The random numbers of sample ``index``: ``θ`` for ``smooth``, else the KL block ``ξ``."""
        if self.config.coefficient == "smooth":
            return self.smooth.coefficients(np.random.default_rng([self.seed, index]))
        return self.grf.coefficients(self.seed, index)

    def coefficient(self, xi: np.ndarray) -> np.ndarray:
        """The coefficient ``a`` for the parameters ``xi`` of :meth:`parameters`, shape ``(n,) * d``."""
        if self.config.coefficient == "smooth":
            return np.exp(self.smooth.evaluate(xi, self.grid.n))
        g = self.grf.synthesize(xi, self.grid.n)
        if self.config.coefficient == "lognormal":
            return np.exp(g)
        return np.where(g >= 0, self.config.high, self.config.low)

    def features(self, index: int) -> np.ndarray:
        """Sorting features: ``θ``, or the low-frequency KL terms ``√λ_k ξ_k`` of ``g`` (its low Fourier modes)."""
        xi = self.parameters(index)
        if self.config.coefficient == "smooth":
            return xi
        low = (slice(FEATURE_MODES),) * self.ndim
        return (self.grf.sqrt_eigenvalues()[low] * xi[low]).ravel()

    def assemble(self, a: np.ndarray) -> tuple[sp.csc_matrix, np.ndarray]:
        """The system ``A u = b`` for the coefficient ``a`` ``(n,) * d``: ``A`` ``(n^d, n^d)``, ``b`` ``(n^d,)``."""
        matrix = diffusion_matrix(a, self.grid.length)
        return matrix, np.full(a.size, self.config.source)

    def problem(self, index: int) -> Problem:
        xi = self.parameters(index)
        a = self.coefficient(xi)
        matrix, rhs = self.assemble(a)
        return Problem(matrix=matrix, rhs=rhs, inputs={"a": a}, params=xi.ravel())

    def fields_of(self, problem: Problem, solution: np.ndarray) -> dict[str, np.ndarray]:
        return {"a": problem.inputs["a"], "u": solution.reshape(self.grid.shape)}


@dataclasses.dataclass(frozen=True)
class Darcy3DConfig(DarcyConfig):
    """The ``darcy3d:`` section of a recipe: :class:`DarcyConfig` with 16 modes per axis by default."""

    modes: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.alpha <= 1.5:
            raise ValueError(f"alpha: must be > 1.5 for a 3-D field with finite variance, got {self.alpha}")


@register_family
class Darcy3D(Darcy2D):
    r"""Darcy flow ``-∇·(a ∇u) = f`` on the unit cube, ``u = 0`` on the boundary.

    The 3-D twin of :class:`Darcy2D`, same parameters (the recipe's ``darcy3d:`` section,
    :class:`Darcy3DConfig`), discretised by the 7-point finite-volume stencil. The GRF is the
    3-D cosine series (covariance ``τ^{2α-3} (-Δ + τ²)^{-α}``, ``modes³`` terms).

    Stored fields: ``a`` and ``u``, each ``(n, n, n)`` before subsampling; ``meta/params``
    holds ``ξ`` flattened row-major from ``(modes, modes, modes)`` (``θ`` for ``smooth``).

    Good values: ``n = 32`` (33k unknowns, about 0.1 s per sample with ``solver: amg``) to
    ``n = 64`` (262k unknowns: a sparse LU is out of reach — SuperLU needs seconds already at
    32³ — and AMG-CG takes about a second); ``modes = 16`` with ``alpha = 2, tau = 3``.
    """

    name: ClassVar[str] = "darcy3d"
    config_type: ClassVar[type] = Darcy3DConfig
    ndim: ClassVar[int] = 3
