r"""1-D viscous Burgers on the unit circle: the FNO paper's Burgers family.

.. math::

    \partial_t u + \partial_x (u^2 / 2) = \nu\, \partial_{xx} u, \qquad x \in [0, 1) \text{ periodic},
    \qquad u(\cdot, 0) = u_0,

learned as the operator ``u_0 ↦ u(·, T)`` (FNO: ``ν = 0.1``, ``T = 1``). The initial state
is a zero-mean periodic Gaussian random field with covariance ``σ² (−Δ + τ²)^{−α}`` (FNO:
``625 (−Δ + 25 I)^{−2}``, i.e. ``σ = 25, τ = 5, α = 2``), drawn as its Karhunen–Loève sum
over the wavenumbers ``1 ≤ k ≤ K``:

.. math::

    u_0(x) = \sum_{k=1}^{K} \sqrt{2 \lambda_k}\, (\xi_k \cos 2\pi k x + \eta_k \sin 2\pi k x),
    \qquad \lambda_k = \sigma^2 (4\pi^2 k^2 + \tau^2)^{-\alpha},

``ξ_k, η_k ~ N(0, 1)`` from ``np.random.default_rng([seed, index])``: a sample is one
trigonometric polynomial, exact at the nodes of every grid with more than ``2K`` points.

Method: Fourier pseudo-spectral on the ``n`` nodes ``j / n`` (as FNO solves on 8192 nodes
and subsamples), with the integrating factor ``e^{−ν (2πk)² t}`` taking the diffusion
exactly and classical RK4 for ``−∂_x(u²/2)``, whose product is 2/3-dealiased (IFRK4).
Fourth order in time; diffusion damps every wavenumber above ``|u| / (2πν)`` faster than
the explicit part can grow it, so at ``ν = 0.1`` the step is set by accuracy, not by the
grid's CFL number.

>>> burgers = Burgers1D(BurgersConfig(modes=8, dt=1e-2, t_end=0.1, batch=2),
...                     grid=TorusGrid(n=64, ndim=1, subsample=2), seed=0)
>>> batch = burgers.generate_batch([0, 1])
>>> batch.fields["a"].shape, batch.fields["u"].shape, batch.params.shape
((2, 32), (2, 32), (2, 16))
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from nopx.datagen.family import Batch, register_family
from nopx.datagen.torus import TorusGrid
from nopx.errors import UserError

__all__ = ["Burgers1D", "BurgersConfig", "grf_amplitudes", "simulate", "synthesize"]


def grf_amplitudes(modes: int, alpha: float, tau: float, sigma: float) -> np.ndarray:
    r"""``√(2 λ_k)`` for ``k = 1 .. modes``, shape ``(modes,)``: the cos/sin amplitudes of the GRF.

    >>> grf_amplitudes(2, alpha=2.0, tau=5.0, sigma=25.0).round(3)
    array([0.548, 0.193])
    """
    k = np.arange(1, modes + 1)
    return np.sqrt(2.0) * sigma * (4 * np.pi**2 * k**2 + tau**2) ** (-alpha / 2)


def synthesize(cos_sin: np.ndarray, n: int) -> np.ndarray:
    """``Σ_k c_k cos 2πkx + s_k sin 2πkx`` at the ``n > 2K`` nodes ``j / n``, shape ``(..., n)``.

    ``cos_sin`` is ``(..., 2, K)``: the ``c_k`` then the ``s_k``.

    >>> x = np.arange(8) / 8
    >>> bool(np.allclose(synthesize(np.array([[0.0, 1.0], [2.0, 0.0]]), 8),
    ...                  np.cos(4 * np.pi * x) + 2 * np.sin(2 * np.pi * x)))
    True
    """
    modes = cos_sin.shape[-1]
    spectrum = np.zeros((*cos_sin.shape[:-2], n // 2 + 1), dtype=complex)
    spectrum[..., 1:modes + 1] = (cos_sin[..., 0, :] - 1j * cos_sin[..., 1, :]) * (n / 2)
    return np.fft.irfft(spectrum, n=n, axis=-1)


def simulate(u0: np.ndarray, *, nu: float, t_end: float, dt: float) -> np.ndarray:
    """``u(·, t_end)`` from ``u0`` (``(B, n)`` at the nodes ``j / n``) by IFRK4, float64, shape ``(B, n)``.

    ``t_end / dt`` is rounded to whole steps.

    >>> x = np.arange(32) / 32
    >>> u = simulate(np.sin(2 * np.pi * x)[None] * 1e-8, nu=0.1, t_end=0.5, dt=0.01)
    >>> bool(np.allclose(u, 1e-8 * np.exp(-0.1 * 4 * np.pi**2 * 0.5) * np.sin(2 * np.pi * x), rtol=1e-6))
    True
    """
    n = u0.shape[-1]
    k = np.fft.rfftfreq(n, 1.0 / n)
    keep = k <= n / 3  # 2/3 rule: the product of two kept fields aliases only beyond the cutoff
    advect = -1j * np.pi * k * keep  # −∂x(·/2) on the transform of u², truncated
    half = np.exp(-nu * (2 * np.pi * k) ** 2 * dt / 2)
    full = half**2

    def nonlinear(v: np.ndarray) -> np.ndarray:
        u = np.fft.irfft(v * keep, n=n, axis=-1)
        return advect * np.fft.rfft(u * u, axis=-1)

    v = np.fft.rfft(np.asarray(u0, dtype=np.float64), axis=-1)
    for _ in range(round(t_end / dt)):
        a = nonlinear(v)
        b = nonlinear(half * (v + dt / 2 * a))
        c = nonlinear(half * v + dt / 2 * b)
        d = nonlinear(full * v + dt * half * c)
        v = full * v + dt / 6 * (full * a + 2 * half * (b + c) + d)
    return np.fft.irfft(v, n=n, axis=-1)


@dataclasses.dataclass(frozen=True)
class BurgersConfig:
    """The ``burgers:`` section of a recipe; see :class:`Burgers1D` for each key."""

    nu: float = 0.1
    t_end: float = 1.0
    dt: float = 1e-3
    alpha: float = 2.0
    tau: float = 5.0
    sigma: float = 25.0
    modes: int = 64
    batch: int = 64

    def __post_init__(self) -> None:
        for key in ("nu", "t_end", "dt", "tau", "sigma"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key}: must be positive, got {getattr(self, key)}")
        if self.alpha <= 0.5:
            raise ValueError(f"alpha: must be > 0.5 for a field with finite variance, got {self.alpha}")
        if self.modes < 1 or self.batch < 1:
            raise ValueError(f"modes and batch: must be at least 1, got {self.modes} and {self.batch}")


@register_family
class Burgers1D:
    r"""Viscous Burgers ``u_0 ↦ u(·, T)`` on the periodic ``[0, 1)`` from GRF initial states.

    ``∂_t u + ∂_x(u²/2) = ν ∂_xx u``, solved on the ``grid.n`` nodes ``j / n`` (IFRK4,
    2/3-dealiased; see the module docstring) and stored every ``grid.subsample``-th node.

    Parameters (the recipe's ``burgers:`` section, :class:`BurgersConfig`):
      nu: viscosity ``ν`` (FNO: 0.1).
      t_end: the final time ``T`` (FNO: 1).
      dt: time step (``t_end / dt`` rounded to whole steps).
      alpha, tau, sigma: the initial GRF, covariance ``σ²(−Δ + τ²)^{−α}`` (FNO: 2, 5, 25).
      modes: ``K``, the wavenumbers ``1..K`` drawn; ``grid.n`` must exceed ``2K``.
      batch: trajectories advanced together (a killed run loses at most one batch).

    Stored fields ``a = u_0`` and ``u = u(·, T)``, each ``(m,)`` per sample, ``m = n /
    subsample``. ``meta/params``: the ``2K`` standard-normal numbers (``ξ_1..ξ_K``, then
    ``η_1..η_K``), which define ``u_0`` on any grid; ``meta/iterations``: time steps;
    ``meta/matvecs``: nonlinear-term evaluations (4 per step); ``meta/residual``: 0 (no
    linear solve; a non-finite trajectory is an error, not data); ``meta/seconds``: the
    batch's wall time over its size.

    Good values: FNO's set is ``ν = 0.1, T = 1``, the GRF above, solved on 8192 nodes and
    subsampled to ``s = 256 .. 8192`` (``grid: {n: 8192, subsample: 32}`` stores 256).
    With ``σ = 25``, ``|u_0| ≲ 2``; diffusion decays even ``k = 1`` by ``e^{−4π²ν} ≈ 0.02``
    by ``T = 1`` (``|u(·, 1)| ≲ 0.03``: compare relative errors), and the higher
    wavenumbers far more, so 1024 nodes give the 8192-node solution to roundoff (relative
    2e-16, both at ``dt = 1e-4``), and ``dt = 1e-3`` is within 2e-9 of ``dt = 1e-4``
    (5e-3: 1e-7); on 8192 nodes with ``K = 1024``, ``dt = 1e-3`` is within 3e-9 of 1e-4.
    Cost at ``dt = 1e-3`` (one core): about 0.17 s per sample on 1024 nodes, 0.9 s on 8192.
    ``tests/test_datagen_burgers.py`` checks the Cole–Hopf solution. ``modes = 64`` keeps
    the initial GRF's amplitudes down to 1.5e-4 of the largest; the stored ``a`` resolves
    them when ``m > 2K``. Much smaller ``ν`` steepens fronts into shocks: refine ``n`` and
    ``dt`` together.
    """

    name: ClassVar[str] = "burgers"
    config_type: ClassVar[type] = BurgersConfig
    fields: ClassVar[tuple[str, ...]] = ("a", "u")
    ndim: ClassVar[int] = 1
    grid_type: ClassVar[type] = TorusGrid
    uses_solver: ClassVar[bool] = False

    def __init__(self, config: BurgersConfig, *, grid: TorusGrid, seed: int) -> None:
        if grid.n <= 2 * config.modes:
            raise UserError(f"grid.n: {grid.n} nodes cannot hold the initial state's wavenumbers up to "
                            f"burgers.modes = {config.modes}; use grid.n > {2 * config.modes} or fewer modes")
        self.config = config
        self.grid = grid
        self.seed = seed
        self.amplitudes = grf_amplitudes(config.modes, config.alpha, config.tau, config.sigma)

    @property
    def n_params(self) -> int:
        return 2 * self.config.modes

    @property
    def batch_size(self) -> int:
        return self.config.batch

    @property
    def steps(self) -> int:
        """Time steps per trajectory."""
        return round(self.config.t_end / self.config.dt)

    @property
    def stored_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: self.grid.stored_shape for name in self.fields}

    def initial_state(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(u_0 (n,), params (2K,))`` of global sample ``index``."""
        xi = np.random.default_rng([self.seed, index]).standard_normal((2, self.config.modes))
        return synthesize(self.amplitudes * xi, self.grid.n), xi.ravel()

    def generate_batch(self, indices: Sequence[int]) -> Batch:
        cfg = self.config
        states = [self.initial_state(i) for i in indices]
        u0, params = np.stack([u for u, _ in states]), np.stack([p for _, p in states])
        started = time.perf_counter()
        u = simulate(u0, nu=cfg.nu, t_end=cfg.t_end, dt=cfg.dt)
        seconds = (time.perf_counter() - started) / len(indices)
        finite = np.isfinite(u).all(axis=1)
        if not finite.all():
            raise UserError(f"burgers: sample {indices[int(np.argmin(finite))]} became non-finite with "
                            f"dt={cfg.dt}, nu={cfg.nu} on {self.grid.n} nodes; reduce burgers.dt")
        count = len(indices)
        return Batch(fields={"a": self.grid.store(u0), "u": self.grid.store(u)}, params=params,
                     iterations=[self.steps] * count, matvecs=[4 * self.steps] * count,
                     residual=[0.0] * count, seconds=[seconds] * count)
