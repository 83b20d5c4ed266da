r"""Heat conduction with a random conductivity, marched by an implicit one-step method.

.. math::

    \partial_t u - \nabla \cdot (\kappa(x) \nabla u) = f \quad \text{on } (0, 1)^2 \times (0, T],
    \qquad u = 0 \text{ on } \partial\Omega, \qquad u(\cdot, 0) = u_0.

With ``A`` the finite-volume operator of ``-∇·(κ∇)`` (:mod:`~nopx.datagen.stencil`), a step
of length ``dt`` solves ``(I + θ dt A) u^t = (I - (1 - θ) dt A) u^{t-1} + dt f``: backward
Euler (``θ = 1``, first order in time, L-stable) or Crank–Nicolson (``θ = 1/2``, second
order). A trajectory is a sequence of systems with one matrix and right-hand sides that
depend on the previous step (a :class:`~nopx.datagen.family.Trajectory`): direct engines
factor once per sample, recycling engines keep their space and warm-start.

>>> heat = Heat2D(HeatConfig(steps=4, every=2, modes=4), grid=CellGrid(n=8, ndim=2), seed=0)
>>> trajectory = heat.problem(0)
>>> trajectory.steps, heat.stored_shapes["u"], heat.attrs()["times"]
(4, (3, 8, 8), [0.0, 0.002, 0.004])
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from nopx.datagen.darcy import Darcy2D, DarcyConfig
from nopx.datagen.family import Trajectory, register_family
from nopx.datagen.grf import CosineGRF
from nopx.datagen.grid import CellGrid
from nopx.datagen.stencil import diffusion_matrix

__all__ = ["Heat2D", "HeatConfig"]


@dataclasses.dataclass(frozen=True)
class HeatConfig:
    """The ``heat:`` section of a recipe; see :class:`Heat2D`."""

    scheme: Literal["crank_nicolson", "backward_euler"] = "crank_nicolson"
    dt: float = 1e-3
    steps: int = 100
    every: int = 10
    coefficient: Literal["piecewise_constant", "lognormal"] = "lognormal"
    alpha: float = 2.0
    tau: float = 3.0
    modes: int = 16
    high: float = 12.0
    low: float = 3.0
    source: float = 0.0

    def __post_init__(self) -> None:
        if self.scheme not in ("crank_nicolson", "backward_euler"):
            raise ValueError(f"scheme: crank_nicolson or backward_euler, got {self.scheme!r}")
        if self.dt <= 0:
            raise ValueError(f"dt: must be positive, got {self.dt}")
        if self.every < 1 or self.steps < 1 or self.steps % self.every:
            raise ValueError(f"steps: must be a positive multiple of every ({self.every}), got {self.steps}")
        if not np.isfinite(self.source):
            raise ValueError(f"source: must be a finite number, got {self.source}")
        DarcyConfig(coefficient=self.coefficient, alpha=self.alpha, tau=self.tau, modes=self.modes,
                    high=self.high, low=self.low)


@register_family
class Heat2D:
    r"""Heat equation ``∂_t u = ∇·(κ ∇u) + f`` on the unit square, ``u = 0`` on the boundary.

    The conductivity ``κ`` is a Darcy coefficient (:class:`~nopx.datagen.darcy.Darcy2D`:
    ``lognormal`` ``exp(g)`` or ``piecewise_constant`` ``high``/``low``, ``g`` the cosine-basis
    GRF), the initial state ``u_0`` an independent draw of the same GRF, ``f`` a constant.

    Parameters (the recipe's ``heat:`` section, :class:`HeatConfig`):
      scheme: ``crank_nicolson`` or ``backward_euler``.
      dt, steps: the time step and the number of steps (``T = steps · dt``).
      every: steps between stored snapshots.
      coefficient, alpha, tau, modes, high, low: the conductivity (and ``u_0``'s GRF), as
        in :class:`~nopx.datagen.darcy.DarcyConfig`.
      source: the constant ``f``.

    Stored fields: ``kappa`` ``(n, n)`` and ``u`` ``(steps / every + 1, n, n)``, the
    snapshots at the root attribute ``times`` (``0, every·dt, ..., T``), before subsampling.
    ``meta/params``: ``ξ`` of ``κ`` then of ``u_0``, each row-major ``(modes, modes)``.

    Good values: ``dt = 1e-3``, 100 steps stored every 10 (``T = 0.1``, about one diffusion
    time ``1/(2π²κ)`` for ``κ ≈ 1``: ``u`` decays by ``e^{-2}`` but keeps structure).
    Crank–Nicolson is second order but rings on rough ``u_0`` when ``dt κ / h² ≫ 1``;
    backward Euler damps it (first order).
    """

    name: ClassVar[str] = "heat"
    config_type: ClassVar[type] = HeatConfig
    fields: ClassVar[tuple[str, ...]] = ("kappa", "u")
    ndim: ClassVar[int] = 2

    def __init__(self, config: HeatConfig, *, grid: CellGrid, seed: int) -> None:
        self.config = config
        self.grid = grid
        self.seed = seed
        self.conductivity = Darcy2D(
            DarcyConfig(coefficient=config.coefficient, alpha=config.alpha, tau=config.tau, modes=config.modes,
                        high=config.high, low=config.low), grid=grid, seed=seed)
        self.grf = CosineGRF(alpha=config.alpha, tau=config.tau, modes=config.modes)

    @property
    def n_params(self) -> int:
        return 2 * self.config.modes**2

    @property
    def stored_shapes(self) -> dict[str, tuple[int, ...]]:
        records = self.config.steps // self.config.every + 1
        return {"kappa": self.grid.stored_shape, "u": (records, *self.grid.stored_shape)}

    def attrs(self) -> dict[str, Any]:
        """Root attributes beside the grid's: the stored ``times``."""
        times = self.config.dt * self.config.every * np.arange(self.config.steps // self.config.every + 1)
        return {"times": times.tolist()}

    def parameters(self, index: int) -> np.ndarray:
        """``ξ`` of ``κ`` then of ``u_0``, ``(2, modes, modes)``."""
        return np.random.default_rng([self.seed, index]).standard_normal((2, self.config.modes, self.config.modes))

    def features(self, index: int) -> np.ndarray:
        """The low modes of ``log κ``'s GRF and of ``u_0`` (see :meth:`Darcy2D.features`)."""
        xi = self.parameters(index)
        low = (slice(6),) * 2
        return (self.grf.sqrt_eigenvalues()[low] * xi[(slice(None), *low)]).ravel()

    def problem(self, index: int) -> Trajectory:
        xi = self.parameters(index)
        kappa = self.conductivity.coefficient(xi[0])
        return self.trajectory(kappa, self.grf.synthesize(xi[1], self.grid.n), params=xi.ravel())

    def trajectory(self, kappa: np.ndarray, u0: np.ndarray, params: np.ndarray) -> Trajectory:
        """The time-stepped systems for conductivity ``kappa`` and initial state ``u0``, both ``(n, n)``."""
        A = diffusion_matrix(kappa, self.grid.length)
        theta = 1.0 if self.config.scheme == "backward_euler" else 0.5
        identity = sp.identity(kappa.size, format="csc")
        dt = self.config.dt
        return Trajectory(
            matrix=sp.csc_matrix(identity + theta * dt * A),
            explicit=sp.csr_matrix(identity - (1 - theta) * dt * A),
            forcing=np.full(kappa.size, dt * self.config.source),
            initial=u0.ravel(),
            steps=self.config.steps,
            every=self.config.every,
            inputs={"kappa": kappa},
            params=params,
        )

    def fields_of(self, problem: Trajectory, solution: np.ndarray) -> dict[str, np.ndarray]:
        return {"kappa": problem.inputs["kappa"], "u": solution.reshape(-1, *self.grid.shape)}
