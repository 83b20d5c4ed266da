r"""2-D incompressible Navier–Stokes in vorticity form on the unit torus: the FNO NS family.

.. math::

    \partial_t w + u \cdot \nabla w = \nu \Delta w + f, \qquad
    -\Delta \psi = w, \quad u = (\partial_y \psi, -\partial_x \psi), \qquad x \in [0, 1)^2 \text{ periodic},

so ``∇·u = 0`` and ``w = ∂_x u_2 − ∂_y u_1`` is the curl of ``u``. This is the sign
convention of FNO's generator (``ns_2d.py``). **Sign trap:** exponax's
``NavierStokesVorticity`` solves ``Δψ = w`` with the same ``u = (∂_yψ, −∂_xψ)``, i.e. it
advects the same ``w`` with ``−u``; its trajectories from the same ``w_0`` are not ours
(its ``vorticity_convection_scale=-1`` gives this PDE).

Method (pseudo-spectral, the FNO scheme): the state is ``ŵ = rfft2(w)`` and stays in
Fourier space between steps. The nonlinear term is dealiased by the 2/3 rule: from the
wavenumbers ``|k_i| ≤ (2/3)(n/2)`` of ``ŵ`` the velocity is ``û = (∂_y, −∂_x) ŵ /
(4π²|k|²)`` (two inverse FFTs); ``u·∇w`` is formed in Basdevant's form ``∂_x∂_y(v² − u²)
+ (∂_xx − ∂_yy)(uv)`` (two forward FFTs, four in all instead of the five of FNO's
``u w_x + v w_y``) and truncated to the same wavenumbers. From a truncated ``ŵ`` both
forms give the exact coefficients of ``u·∇w`` at the kept wavenumbers (a product of two
truncated fields aliases only beyond the cutoff), so this is FNO's step to roundoff
whenever ``ŵ`` has no content beyond the cutoff (always at 256² with GRF ``modes`` ≤ 85; at 64² the GRF's
wavenumbers 22..32, below 2e-3 of the largest and damped by ``e^{-19}`` per time unit at
``ν = 1e-3``, enter only FNO's aliasing error). The viscous term is Crank–Nicolson, exact
per wavenumber because it is diagonal (no linear solve); ``−u·∇w + f`` is explicit:

* ``cn_euler`` (FNO): explicit Euler. First order in time (second order when
  ``u·∇w = 0``). One nonlinear evaluation per step.
* ``cn_ab2``: second-order Adams–Bashforth (started by one Euler step). Second order, one
  nonlinear evaluation per step: the cheapest accurate choice.
* ``cn_heun``: Heun predictor–corrector (explicit trapezoidal). Second order, two nonlinear
  evaluations per step, the most robust to large steps.

Arrays are indexed ``w[..., i, j] = w(x = i h, y = j h)`` with ``h = 1/n`` (axis ``-2`` is
``x``). The mean of ``w`` is zero and stays zero.

>>> grf = PeriodicGRF(modes=4)
>>> w0 = np.stack([grf.sample(0, i, 16) for i in range(2)])
>>> w = simulate(w0, nu=1e-3, dt=1e-2, steps_per_record=10, records=3)
>>> w.shape  # (batch, records + 1, n, n): t = 0, 0.1, 0.2, 0.3
(2, 4, 16, 16)
>>> bool(np.array_equal(w[:, 0], w0))
True
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np

from nopx.datagen.family import Batch, register_family
from nopx.datagen.periodic_grf import PeriodicGRF
from nopx.datagen.torus import TorusGrid, nodes
from nopx.errors import UserError

__all__ = ["NavierStokes2D", "NavierStokesConfig", "simulate", "forcing_field", "SCHEMES",
           "SpectralOperators", "spectral_operators"]

Scheme = Literal["cn_euler", "cn_ab2", "cn_heun"]
#: Nonlinear-term evaluations per step of each scheme.
SCHEMES: dict[str, int] = {"cn_euler": 1, "cn_ab2": 1, "cn_heun": 2}


def forcing_field(kind: str, n: int, amplitude: float = 0.1, wavenumber: int = 1) -> np.ndarray:
    """The time-constant forcing ``f`` at the nodes of an ``n × n`` torus grid, shape ``(n, n)``.

    ``fno``: ``A (sin 2πk(x + y) + cos 2πk(x + y))`` (FNO: ``A = 0.1``, ``k = 1``);
    ``kolmogorov``: ``A sin(2πk y)``, whose steady state ``w = f / (4π²k²ν)`` solves the
    full equations (``u·∇w = 0``); ``none``: ``0``.

    >>> forcing_field("fno", 4).round(3)[0]
    array([ 0.1,  0.1, -0.1, -0.1])
    """
    x = nodes(n)[:, None]
    y = nodes(n)[None, :]
    phase = 2 * np.pi * wavenumber
    if kind == "fno":
        return amplitude * (np.sin(phase * (x + y)) + np.cos(phase * (x + y)))
    if kind == "kolmogorov":
        return amplitude * np.sin(phase * y) * np.ones_like(x)
    if kind == "none":
        return np.zeros((n, n))
    raise ValueError(f"forcing: unknown kind {kind!r} (fno, kolmogorov, none)")


class SpectralOperators(NamedTuple):
    """The symbols of the vorticity equation on the ``rfft2`` grid ``(nx, ny//2 + 1)`` (numpy,
    float64/complex128): what the solver and :mod:`~nopx.datagen.navier_stokes_residual` share.

    Attributes:
      minus_lap: ``4π²|k|²``, the symbol of ``−Δ`` (``k`` the integer wavenumbers).
      keep: the 2/3-rule mask ``|k_i| ≤ (2/3)(n_i/2)`` (all true without dealiasing); the
        nonlinear term is formed from ``keep · ŵ`` and truncated to ``keep``.
      velocity: ``(2, nx, ny//2 + 1)``: ``(u, v) = (∂_yψ, −∂_xψ)`` from ``ŵ``, where
        ``ψ̂ = ŵ / 4π²|k|²``.
      gradient: ``(2, nx, ny//2 + 1)``: ``(∂_x, ∂_y)``.
      products: ``(2, nx, ny//2 + 1)``: Basdevant's ``u·∇w = ∂_x∂_y(v² − u²) + (∂_xx −
        ∂_yy)(uv)``, the symbols of ``∂_x∂_y`` and ``∂_xx − ∂_yy``.

    >>> ops = spectral_operators(6)
    >>> ops.keep[:, 0].tolist()  # wavenumbers 0, 1, 2, -3, -2, -1; cutoff (2/3)·3 = 2
    [True, True, True, False, True, True]
    """

    minus_lap: np.ndarray
    keep: np.ndarray
    velocity: np.ndarray
    gradient: np.ndarray
    products: np.ndarray


def spectral_operators(nx: int, ny: int | None = None, *, dealias: bool = True) -> SpectralOperators:
    """The :class:`SpectralOperators` of an ``nx × ny`` torus grid (``ny`` defaults to ``nx``);
    ``dealias=False`` keeps every wavenumber."""
    ny = nx if ny is None else ny
    kx = np.fft.fftfreq(nx, 1.0 / nx)[:, None]
    ky = np.fft.rfftfreq(ny, 1.0 / ny)[None, :]
    minus_lap = 4 * np.pi**2 * (kx**2 + ky**2)
    inv = np.divide(1.0, minus_lap, out=np.zeros_like(minus_lap), where=minus_lap > 0)
    keep = (np.abs(kx) <= (2.0 / 3.0) * (nx // 2)) & (np.abs(ky) <= (2.0 / 3.0) * (ny // 2))
    return SpectralOperators(
        minus_lap, keep if dealias else np.ones_like(keep),
        velocity=np.stack([2j * np.pi * ky * inv, -2j * np.pi * kx * inv]),
        gradient=np.stack(np.broadcast_arrays(2j * np.pi * kx, 2j * np.pi * ky)),
        products=np.stack([-4 * np.pi**2 * kx * ky, -4 * np.pi**2 * (kx**2 - ky**2)]))


@functools.lru_cache(maxsize=8)
def _program(batch: int, n: int, nu: float, dt: float, scheme: str, steps_per_record: int,
             records: int, subsample: int, downsample: str, dtype: str) -> Any:
    """The compiled ``(w0 (B, n, n), f (n, n)) -> w (B, records + 1, m, m)``; ``float64`` enabled around the call."""
    import jax
    import jax.numpy as jnp

    real = jnp.float64 if dtype == "float64" else jnp.float32
    ops = spectral_operators(n)
    # The 2/3 rule folded in: u from the truncated ŵ, u·∇w truncated.
    velocity = jnp.asarray(ops.keep * ops.velocity, dtype=jnp.result_type(real, jnp.complex64))
    products = jnp.asarray(ops.keep * ops.products, dtype=real)
    half_visc = 0.5 * dt * nu * ops.minus_lap
    a = jnp.asarray((1.0 - half_visc) / (1.0 + half_visc), dtype=real)
    b = jnp.asarray(dt / (1.0 + half_visc), dtype=real)
    m = n // subsample

    def rhs(w_hat, f_hat):
        """``f̂ − (u·∇w)^``, dealiased."""
        u, v = jnp.fft.irfft2(velocity[:, None] * w_hat[None], s=(n, n))
        p = jnp.fft.rfft2(jnp.stack([v * v - u * u, u * v]))
        return f_hat - (products[0] * p[0] + products[1] * p[1])

    def step(carry, f_hat):
        w_hat, previous = carry
        n0 = rhs(w_hat, f_hat)
        if scheme == "cn_euler":
            return a * w_hat + b * n0, previous
        if scheme == "cn_ab2":
            return a * w_hat + b * (1.5 * n0 - 0.5 * previous), n0
        predicted = a * w_hat + b * n0
        return a * w_hat + (0.5 * b) * (n0 + rhs(predicted, f_hat)), previous

    def store(w_hat):
        if downsample == "spectral" and subsample > 1:
            half = m // 2
            rows = jnp.concatenate([w_hat[:, :half], jnp.zeros_like(w_hat[:, :1]),
                                    w_hat[:, n - half + 1:]], axis=1)
            coarse = jnp.pad(rows[:, :, :half], ((0, 0), (0, 0), (0, 1)))
            return jnp.fft.irfft2(coarse * (m * m / (n * n)), s=(m, m))
        return jnp.fft.irfft2(w_hat, s=(n, n))[:, ::subsample, ::subsample]

    def run(w0, f):
        w_hat = jnp.fft.rfft2(w0.astype(real))
        f_hat = jnp.fft.rfft2(f.astype(real))
        start = (w_hat, rhs(w_hat, f_hat) if scheme == "cn_ab2" else jnp.zeros((), w_hat.dtype))

        def record(carry, _):
            carry = jax.lax.fori_loop(0, steps_per_record, lambda _, c: step(c, f_hat), carry)
            return carry, store(carry[0])

        _, snapshots = jax.lax.scan(record, start, None, length=records)
        first = w0.astype(real)[:, ::subsample, ::subsample] if downsample == "stride" else store(w_hat)
        return jnp.concatenate([first[:, None], jnp.moveaxis(snapshots, 0, 1)], axis=1)

    arg = jax.ShapeDtypeStruct
    return jax.jit(run).lower(arg((batch, n, n), real), arg((n, n), real)).compile()


def simulate(
    w0: np.ndarray,
    *,
    nu: float,
    dt: float,
    steps_per_record: int,
    records: int,
    forcing: np.ndarray | None = None,
    scheme: Scheme = "cn_euler",
    dtype: Literal["float64", "float32"] = "float64",
    subsample: int = 1,
    downsample: Literal["stride", "spectral"] = "stride",
) -> np.ndarray:
    """Advance a batch of initial vorticities and record snapshots.

    Args:
      w0: ``(B, n, n)`` initial vorticity at the nodes (``n`` even).
      nu: viscosity ``ν``.
      dt: time step.
      steps_per_record: steps between two snapshots (recording interval ``steps_per_record · dt``).
      records: snapshots after ``t = 0``; the run lasts ``records · steps_per_record`` steps.
      forcing: ``(n, n)`` time-constant ``f`` (default 0); see :func:`forcing_field`.
      scheme: ``cn_euler``, ``cn_ab2`` or ``cn_heun`` (module docstring).
      dtype: compute precision; ``float64`` is enabled for this call only.
      subsample: store every ``subsample``-th node per axis (``downsample="stride"``, as FNO)
        or the field truncated to the wavenumbers of the ``n / subsample`` grid
        (``"spectral"``; its Nyquist modes dropped).

    Returns:
      ``(B, records + 1, n / subsample, n / subsample)`` in ``dtype``: ``t = 0`` (``w0``
      itself when striding), then every ``steps_per_record · dt``.
    """
    import jax

    w0 = np.asarray(w0)
    n = w0.shape[-1]
    if w0.ndim != 3 or w0.shape[1] != n or n % 2 or n % subsample:
        raise ValueError(f"w0: need shape (B, n, n) with n even and divisible by subsample, got {w0.shape}")
    f = np.zeros((n, n)) if forcing is None else np.asarray(forcing)
    run = compile_program(w0.shape[0], n, nu=nu, dt=dt, steps_per_record=steps_per_record, records=records,
                          scheme=scheme, dtype=dtype, subsample=subsample, downsample=downsample)
    with jax.enable_x64(dtype == "float64"):
        return np.asarray(run(w0.astype(dtype), f.astype(dtype)))


def compile_program(batch: int, n: int, *, nu: float, dt: float, steps_per_record: int, records: int,
                    scheme: Scheme = "cn_euler", dtype: Literal["float64", "float32"] = "float64",
                    subsample: int = 1, downsample: Literal["stride", "spectral"] = "stride") -> Any:
    """The compiled rollout that :func:`simulate` runs on a ``(batch, n, n)`` input, cached per process.

    Call it first to keep compilation out of a timing of :func:`simulate` (same arguments
    but ``w0`` and ``forcing``).
    """
    import jax

    if scheme not in SCHEMES:
        raise ValueError(f"scheme: {scheme!r} is not one of {', '.join(SCHEMES)}")
    with jax.enable_x64(dtype == "float64"):
        return _program(int(batch), int(n), float(nu), float(dt), scheme, int(steps_per_record),
                        int(records), int(subsample), downsample, dtype)


@dataclasses.dataclass(frozen=True)
class NavierStokesConfig:
    """The ``navier_stokes:`` section of a recipe; see :class:`NavierStokes2D` for each key."""

    nu: float = 1e-3
    dt: float = 1e-4
    t_end: float = 50.0
    record_every: float = 1.0
    scheme: Scheme = "cn_euler"
    dtype: Literal["float64", "float32"] = "float64"
    batch: int = 16
    forcing: Literal["fno", "kolmogorov", "none"] = "fno"
    forcing_amplitude: float = 0.1
    forcing_wavenumber: int = 1
    alpha: float = 2.5
    tau: float = 7.0
    modes: int = 32
    downsample: Literal["stride", "spectral"] = "stride"

    def __post_init__(self) -> None:
        for key in ("nu", "dt", "t_end", "record_every"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key}: must be positive, got {getattr(self, key)}")
        _whole(self.record_every / self.dt, "record_every", f"record_every / dt = {self.record_every} / {self.dt}")
        _whole(self.t_end / self.record_every, "t_end", f"t_end / record_every = {self.t_end} / {self.record_every}")
        if self.batch < 1:
            raise ValueError(f"batch: must be at least 1, got {self.batch}")
        if self.forcing_wavenumber < 1:
            raise ValueError(f"forcing_wavenumber: must be a positive integer, got {self.forcing_wavenumber}")
        PeriodicGRF(alpha=self.alpha, tau=self.tau, modes=self.modes)

    @property
    def steps_per_record(self) -> int:
        return round(self.record_every / self.dt)

    @property
    def records(self) -> int:
        return round(self.t_end / self.record_every)


def _whole(ratio: float, key: str, what: str) -> None:
    if abs(ratio - round(ratio)) > 1e-9 * max(1.0, ratio) or round(ratio) < 1:
        raise ValueError(f"{key}: {what} = {ratio:g} must be a whole number of at least 1")


@register_family
class NavierStokes2D:
    r"""Forced 2-D Navier–Stokes (vorticity) trajectories from GRF initial vorticities.

    ``∂_t w + u·∇w = νΔw + f`` on the unit torus, ``−Δψ = w``, ``u = (∂_yψ, −∂_xψ)``
    (FNO's convention; exponax's ``Δψ = w`` flips the flow, see the module docstring),
    solved pseudo-spectrally on the ``grid.n²`` nodes ``(i/n, j/n)``.

    Parameters (the recipe's ``navier_stokes:`` section, :class:`NavierStokesConfig`):
      nu: viscosity ``ν``.
      dt: time step; ``record_every / dt`` must be whole.
      t_end: final time ``T``; ``t_end / record_every`` must be whole.
      record_every: time between stored snapshots.
      scheme: time stepping of the explicit part, ``cn_euler`` (FNO, first order),
        ``cn_ab2`` or ``cn_heun`` (second order); viscosity is Crank–Nicolson in all three.
      dtype: compute precision, ``float64`` (scoped, not global) or ``float32``; the stored
        precision is ``storage.dtype``.
      batch: trajectories advanced together (one jit-compiled program per batch size);
        a killed run loses at most the batch in flight.
      forcing, forcing_amplitude, forcing_wavenumber: ``f`` (:func:`forcing_field`); FNO:
        ``fno``, 0.1, 1.
      alpha, tau, modes: the initial vorticity, a :class:`~nopx.datagen.periodic_grf.PeriodicGRF`
        (FNO: ``alpha=2.5``, ``tau=7``); ``modes`` is the largest wavenumber drawn per axis.
      downsample: ``stride`` (store every ``grid.subsample``-th node, as FNO does) or
        ``spectral`` (truncate to the stored grid's wavenumbers, Nyquist dropped).

    Stored field ``w``, shape ``(T / record_every + 1, m, m)`` per sample, ``m = n /
    subsample``: ``w[r]`` is the vorticity at ``t = r · record_every``, **``t = 0`` (the
    initial condition) included** (FNO stores ``a = w_0`` apart from ``u = w(1..T)``;
    here ``w[:, :10]`` → ``w[:, 10:]`` is FNO's ``T_in = 10`` task). The root attribute
    ``times`` lists the times. ``meta/params``: the ``2 (2K+1)²`` standard-normal GRF
    numbers ``(ξ, η)`` (``PeriodicGRF.coefficients``, flattened row-major), which define
    ``w_0`` on any grid. ``meta/iterations``: time steps; ``meta/matvecs``: nonlinear-term
    evaluations; ``meta/residual``: 0 (no linear solve: ``ψ`` is exact per wavenumber and
    ``u`` divergence-free by construction; a trajectory that turns non-finite is an error,
    not data); ``meta/seconds``: the batch's wall time over its size, compilation excluded.

    Good values: FNO's sets are ``ν = 1e-3, T = 50``, ``1e-4, T = 30`` and ``1e-5, T = 20``,
    ``dt = 1e-4`` on 256² stored at 64² (``subsample: 4``), ``cn_euler``. For ``ν = 1e-3``
    the flow stays gentle (``|w| ≲ 2.1``, ``|u| ≲ 0.27`` up to ``T = 50``), so the advective
    CFL number ``|u| dt / h`` is below 0.01 there: ``dt = 1e-4`` is set by accuracy, not
    stability. At 64² (``ν = 1e-3``, ``T = 20``; relative L2 difference from a converged
    run, worst snapshot): ``cn_euler`` at ``dt = 1e-3`` 1.8e-4 (5e-4: 8.8e-5);
    ``cn_ab2`` at ``dt = 1e-3`` 6e-8, ``5e-3`` 1.6e-6, ``1e-2`` 6.5e-6; ``cn_heun`` at
    ``1e-2`` 3e-6 for twice the work per step. ``dtype: float32`` adds about 1e-4 of
    roundoff over 1e4 steps. 64² resolves ``ν = 1e-3`` (the 32² and 64² trajectories of a
    sample differ by 1e-4, 64² and 128² by 1e-10 at ``T = 1``); smaller ``ν`` needs finer grids.
    Cost: four real FFTs of the grid per nonlinear evaluation, none between steps.
    """

    name: ClassVar[str] = "navier_stokes"
    config_type: ClassVar[type] = NavierStokesConfig
    fields: ClassVar[tuple[str, ...]] = ("w",)
    ndim: ClassVar[int] = 2
    grid_type: ClassVar[type] = TorusGrid
    uses_solver: ClassVar[bool] = False

    def __init__(self, config: NavierStokesConfig, *, grid: TorusGrid, seed: int) -> None:
        if grid.n % 2:
            raise UserError(f"grid.n: the spectral solver needs an even number of nodes, got {grid.n}")
        self.config = config
        self.grid = grid
        self.seed = seed
        self.grf = PeriodicGRF(alpha=config.alpha, tau=config.tau, modes=config.modes)
        self.forcing = forcing_field(config.forcing, grid.n, config.forcing_amplitude, config.forcing_wavenumber)

    @property
    def n_params(self) -> int:
        return self.grf.n_params

    @property
    def batch_size(self) -> int:
        return self.config.batch

    @property
    def times(self) -> np.ndarray:
        """The stored times ``0, record_every, ..., t_end``, shape ``(records + 1,)``."""
        return np.arange(self.config.records + 1) * self.config.record_every

    @property
    def stored_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"w": (self.config.records + 1, *self.grid.stored_shape)}

    def attrs(self) -> dict[str, Any]:
        """Root attributes beside the grid's: the stored ``times``."""
        return {"times": self.times.tolist()}

    def initial_vorticity(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(w_0 (n, n), params (P,))`` of global sample ``index``."""
        xi = self.grf.coefficients(self.seed, index)
        return self.grf.synthesize(xi, self.grid.n), xi.ravel()

    def generate_batch(self, indices: Sequence[int]) -> Batch:
        cfg = self.config
        w0, params = zip(*(self.initial_vorticity(i) for i in indices), strict=True)
        settings = dict(nu=cfg.nu, dt=cfg.dt, steps_per_record=cfg.steps_per_record, records=cfg.records,
                        scheme=cfg.scheme, dtype=cfg.dtype, subsample=self.grid.subsample,
                        downsample=cfg.downsample)
        compile_program(len(indices), self.grid.n, **settings)
        started = time.perf_counter()
        w = simulate(np.stack(w0), forcing=self.forcing, **settings)
        seconds = (time.perf_counter() - started) / len(indices)
        finite = np.isfinite(w).reshape(len(indices), -1).all(axis=1)
        if not finite.all():
            raise UserError(
                f"navier_stokes: sample {indices[int(np.argmin(finite))]} became non-finite (blow-up) "
                f"with dt={cfg.dt}, nu={cfg.nu} on {self.grid.n}²; reduce navier_stokes.dt, use "
                f"scheme cn_heun, or refine grid.n")
        steps = cfg.records * cfg.steps_per_record
        evaluations = steps * SCHEMES[cfg.scheme] + (cfg.scheme == "cn_ab2")
        count = len(indices)
        return Batch(fields={"w": w}, params=np.stack(params), iterations=[steps] * count,
                     matvecs=[evaluations] * count, residual=[0.0] * count, seconds=[seconds] * count)
