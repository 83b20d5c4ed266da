r"""Poisson's equation with a random source and random boundary data: one matrix, many right-hand sides.

.. math::

    -\Delta u = f \quad \text{on } (0, 1)^2, \qquad u = g \text{ on } \partial\Omega.

SKR's Poisson family, re-specified honestly: ``f`` and ``g`` are random Chebyshev series
(the released MATLAB scripts' construction), and the matrix does not depend on the sample
at all, so the right engine factors it once and solves every sample's right-hand side
(``direct`` and ``pardiso`` do this automatically; a Krylov engine with recycling gains
the same way).

>>> poisson = Poisson2D(PoissonConfig(degree=2), grid=CellGrid(n=8, ndim=2), seed=0)
>>> first, second = poisson.problem(0), poisson.problem(1)
>>> first.matrix is second.matrix, first.params.shape
(True, (18,))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from numpy.polynomial import chebyshev

from nopx.datagen.family import Problem, register_family
from nopx.datagen.grid import CellGrid, cell_centres
from nopx.datagen.stencil import diffusion_matrix, dirichlet_lift

__all__ = ["Poisson2D", "PoissonConfig", "chebyshev_field"]


def chebyshev_field(coefficients: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``(x, y) ↦ Σ_ij c_ij T_i(2x - 1) T_j(2y - 1)`` on ``[0, 1]²`` for ``c`` ``(d + 1, d + 1)``.

    >>> chebyshev_field(np.array([[1.0, 0.0], [0.0, 2.0]]))(np.array([1.0]), np.array([0.0, 1.0]))
    array([-1.,  3.])
    """

    def field(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x, y = np.broadcast_arrays(x, y)
        return chebyshev.chebval2d(2 * x - 1, 2 * y - 1, coefficients)

    return field


@dataclasses.dataclass(frozen=True)
class PoissonConfig:
    """The ``poisson:`` section of a recipe; see :class:`Poisson2D`."""

    degree: int = 5
    source_scale: float = 10.0
    boundary_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.degree < 0:
            raise ValueError(f"degree: must be non-negative, got {self.degree}")
        for key in ("source_scale", "boundary_scale"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key}: must be non-negative, got {getattr(self, key)}")


@register_family
class Poisson2D:
    r"""Poisson ``-Δu = f`` on the unit square with ``u = g`` on the boundary.

    ``f = source_scale · F`` and ``g = boundary_scale · G`` with ``F``, ``G`` Chebyshev series
    of degree ``degree`` in each variable, coefficients ``U(-1, 1)`` (SKR: degree 5). The
    boundary data is the trace of ``G``. Discretised by the cell-centred 5-point stencil
    (:mod:`~nopx.datagen.stencil`, ``a = 1``), the boundary data entering through ghost
    cells: second-order accurate, and the same SPD matrix for every sample.

    Parameters (the recipe's ``poisson:`` section, :class:`PoissonConfig`):
      degree: the Chebyshev degree of ``F`` and ``G`` per variable.
      source_scale, boundary_scale: the amplitudes of ``f`` and ``g``.

    Stored fields: ``f``, ``g`` (``G`` at the cell centres; only its boundary trace enters
    the PDE) and ``u``, each ``(n, n)`` before subsampling. ``meta/params``: the ``F`` then
    the ``G`` coefficients, each row-major from ``(degree + 1, degree + 1)``.

    Good values: the defaults give ``f`` and ``u`` of order 1 (the source dominates the
    interior, the boundary data the edges); ``degree`` 3–8.
    """

    name: ClassVar[str] = "poisson"
    config_type: ClassVar[type] = PoissonConfig
    fields: ClassVar[tuple[str, ...]] = ("f", "g", "u")
    ndim: ClassVar[int] = 2

    def __init__(self, config: PoissonConfig, *, grid: CellGrid, seed: int) -> None:
        self.config = config
        self.grid = grid
        self.seed = seed
        # One object for every sample: engines see the same matrix and factor it once.
        self.matrix = diffusion_matrix(np.ones(grid.shape), grid.length)

    @property
    def n_params(self) -> int:
        return 2 * (self.config.degree + 1) ** 2

    def features(self, index: int) -> np.ndarray:
        return self.parameters(index)

    def parameters(self, index: int) -> np.ndarray:
        """The ``F`` and ``G`` coefficients of sample ``index``, ``(2 (degree + 1)²,)``."""
        return np.random.default_rng([self.seed, index]).uniform(-1, 1, self.n_params)

    def assemble(self, f: Callable[..., np.ndarray], g: Callable[..., np.ndarray]) -> tuple[sp.csc_matrix, np.ndarray]:
        """The system for source ``f(x, y)`` and boundary data ``g(x, y)``: ``A`` ``(n², n²)``, ``b`` ``(n²,)``."""
        x = cell_centres(self.grid.n, self.grid.length)
        source = np.broadcast_to(f(x[:, None], x[None, :]), self.grid.shape)
        ones = np.ones(self.grid.shape)
        return self.matrix, source.ravel() + dirichlet_lift(ones, g, self.grid.length)

    def problem(self, index: int) -> Problem:
        params = self.parameters(index)
        shape = (self.config.degree + 1,) * 2
        F = chebyshev_field(self.config.source_scale * params[: params.size // 2].reshape(shape))
        G = chebyshev_field(self.config.boundary_scale * params[params.size // 2:].reshape(shape))
        matrix, rhs = self.assemble(F, G)
        x = cell_centres(self.grid.n, self.grid.length)
        inputs = {"f": F(x[:, None], x[None, :]), "g": G(x[:, None], x[None, :])}
        return Problem(matrix=matrix, rhs=rhs, inputs=inputs, params=params)

    def fields_of(self, problem: Problem, solution: np.ndarray) -> dict[str, np.ndarray]:
        return {**problem.inputs, "u": solution.reshape(self.grid.shape)}
