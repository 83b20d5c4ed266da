r"""Steady advection–diffusion in a random divergence-free flow: a non-symmetric family.

.. math::

    -\varepsilon \Delta u + v \cdot \nabla u = f \quad \text{on } (0, 1)^2, \qquad
    u = 0 \text{ on } \partial\Omega, \qquad v = (\partial_y \psi, -\partial_x \psi).

The stream function ``ψ`` is a cosine-basis GRF, so ``v`` is divergence-free; the
finite-volume scheme keeps it so exactly: the normal velocity through a face is the
difference of ``ψ`` at the face's two corners over ``h``, and these fluxes telescope over
every cell. Convective face values are central (``(u_p + u_q)/2``, zero on the boundary):
second-order accurate, non-symmetric, and free of oscillations while the cell Péclet number
``|v| h / ε`` stays below 2.

>>> family = AdvectionDiffusion2D(AdvectionDiffusionConfig(modes=4), grid=CellGrid(n=8, ndim=2), seed=0)
>>> matrix = family.problem(0).matrix
>>> bool(abs(matrix - matrix.T).max() > 0)  # non-symmetric
True
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

__all__ = ["AdvectionDiffusion2D", "AdvectionDiffusionConfig", "advection_matrix"]


def advection_matrix(psi: np.ndarray, length: float = 1.0) -> sp.csc_matrix:
    """The central finite-volume ``v·∇u = ∇·(v u)`` for ``v = ∇⊥ψ``, ``u = 0`` on the boundary.

    Args:
      psi: the stream function at the ``(n + 1) × (n + 1)`` cell corners ``(i h, j h)``.
      length: the side of the square.

    Returns:
      CSC ``(n², n²)``, divided by the cell area like :func:`~nopx.datagen.stencil.diffusion_matrix`.

    >>> float(abs(advection_matrix(np.zeros((3, 3)))).max())  # no flow: zero (the pattern is kept)
    0.0
    """
    n = psi.shape[0] - 1
    h = length / n
    # Mean normal velocity through each face, positive towards increasing index.
    vx = (psi[1:-1, 1:] - psi[1:-1, :-1]) / h  # x-faces between cells (i, j) and (i + 1, j): v_x = ∂ψ/∂y
    vy = -(psi[:, 1:-1][1:] - psi[:, 1:-1][:-1]) / h  # y-faces between (i, j) and (i, j + 1): v_y = -∂ψ/∂x
    index = np.arange(n * n).reshape(n, n)
    rows, cols, values = [], [], []
    for velocity, lower, upper in ((vx, index[:-1], index[1:]), (vy, index[:, :-1], index[:, 1:])):
        flux = 0.5 * velocity.ravel() / h  # F (u_p + u_q) / 2 through a face of length h, over h²
        p, q = lower.ravel(), upper.ravel()
        rows += [p, p, q, q]
        cols += [p, q, p, q]
        values += [flux, flux, -flux, -flux]
    return sp.csc_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n * n, n * n))


@dataclasses.dataclass(frozen=True)
class AdvectionDiffusionConfig:
    """The ``advection_diffusion:`` section of a recipe; see :class:`AdvectionDiffusion2D`."""

    epsilon: float = 0.02
    velocity: float = 1.0
    alpha: float = 3.0
    tau: float = 3.0
    modes: int = 16
    source: float = 1.0

    def __post_init__(self) -> None:
        if self.epsilon <= 0:
            raise ValueError(f"epsilon: the diffusivity must be positive, got {self.epsilon}")
        if self.velocity < 0:
            raise ValueError(f"velocity: must be non-negative, got {self.velocity}")
        CosineGRF(alpha=self.alpha, tau=self.tau, modes=self.modes)
        if self.alpha <= 1 or self.tau <= 0 or self.modes < 2:
            raise ValueError(f"alpha: need alpha > 1, tau > 0, modes >= 2; got {self.alpha}, {self.tau}, {self.modes}")


@register_family
class AdvectionDiffusion2D:
    r"""Advection–diffusion ``-ε Δu + v·∇u = f`` on the unit square, ``u = 0`` on the boundary.

    ``v = velocity · ∇⊥g`` with ``g`` a cosine-basis GRF (:class:`~nopx.datagen.grf.CosineGRF`,
    ``alpha``, ``tau``, ``modes``), ``f`` a constant.

    Parameters (the recipe's ``advection_diffusion:`` section, :class:`AdvectionDiffusionConfig`):
      epsilon: the diffusivity ``ε``.
      velocity: the scale of ``v``.
      alpha, tau, modes: the stream function's GRF (``alpha = 3``: smooth flows).
      source: the constant ``f``.

    Stored fields: ``vx``, ``vy`` (the velocity at the cell centres, averaged from the faces)
    and ``u``, each ``(n, n)`` before subsampling. ``meta/params``: ``ξ`` of ``g``, row-major
    ``(modes, modes)``.

    Good values: the defaults give ``|v|`` up to about 1 and a global Péclet number
    ``|v| / ε`` up to about 50 (boundary layers, a strongly non-symmetric matrix); keep the
    cell Péclet number ``|v| h / ε < 2``, i.e. ``n > |v|_max / (2ε)`` (``n ≥ 32`` here).
    """

    name: ClassVar[str] = "advection_diffusion"
    config_type: ClassVar[type] = AdvectionDiffusionConfig
    fields: ClassVar[tuple[str, ...]] = ("vx", "vy", "u")
    ndim: ClassVar[int] = 2

    def __init__(self, config: AdvectionDiffusionConfig, *, grid: CellGrid, seed: int) -> None:
        self.config = config
        self.grid = grid
        self.seed = seed
        self.grf = CosineGRF(alpha=config.alpha, tau=config.tau, modes=config.modes)
        self.diffusion = diffusion_matrix(np.full(grid.shape, config.epsilon), grid.length)

    @property
    def n_params(self) -> int:
        return self.config.modes**2

    def features(self, index: int) -> np.ndarray:
        """The low-frequency terms of the stream function."""
        xi = self.grf.coefficients(self.seed, index)
        return (self.grf.sqrt_eigenvalues()[:6, :6] * xi[:6, :6]).ravel()

    def problem(self, index: int) -> Problem:
        xi = self.grf.coefficients(self.seed, index)
        corners = np.linspace(0.0, self.grid.length, self.grid.n + 1) / self.grid.length
        psi = self.config.velocity * self.grf.evaluate(xi, corners, corners)
        matrix = sp.csc_matrix(self.diffusion + advection_matrix(psi, self.grid.length))
        h = self.grid.h
        vx = 0.5 * ((psi[:-1, 1:] - psi[:-1, :-1]) + (psi[1:, 1:] - psi[1:, :-1])) / h
        vy = -0.5 * ((psi[1:, :-1] - psi[:-1, :-1]) + (psi[1:, 1:] - psi[:-1, 1:])) / h
        return Problem(matrix=matrix, rhs=np.full(self.grid.n**2, self.config.source),
                       inputs={"vx": vx, "vy": vy}, params=xi.ravel())

    def fields_of(self, problem: Problem, solution: np.ndarray) -> dict[str, np.ndarray]:
        return {**problem.inputs, "u": solution.reshape(self.grid.shape)}
