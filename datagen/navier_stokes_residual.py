r"""The Navier–Stokes residual of a vorticity trajectory: how far it is from solving the PDE.

The residual of a trajectory :math:`w` on the unit torus (the equation of
:mod:`~nopx.datagen.navier_stokes`) is

.. math::
    r = \partial_t w - R(w), \qquad R(w) = -u\cdot\nabla w + \nu\Delta w + f, \qquad
    -\Delta\psi = w,\quad u = (\partial_y\psi, -\partial_x\psi),

with :math:`R` the right-hand side the solver (:func:`~nopx.datagen.navier_stokes.simulate`)
integrates, 2/3-rule dealiasing included (:func:`solver_time_derivative`, built on the
solver's own :func:`~nopx.datagen.navier_stokes.spectral_operators`). A posteriori checks
of a predicted trajectory measure it, e.g. Spectral-Refiner's :math:`H^{-1}` estimator
(:mod:`nopx.refine`).

**Time derivative** (:data:`TimeDerivative`). ``"fd"``: central differences between the
slices (second order, one-sided at the ends: :func:`time_derivative_fd`; at the coarse
slice spacing of a dataset this error can dominate, see ``bench/RESULTS.md``). An array:
the exact :math:`\partial_t w`, e.g. that of the temporal Fourier series an SFNO output
layer produces (``"spectral"``, which the slices alone do not determine). ``"solver"`` is
torch-cfd's choice: :math:`\partial_t w` taken from a ±1e-6 step of the solver started at
each slice, i.e. in the limit :math:`R(w)` itself. **Caveat:** then :math:`r = R(w) - R(w)
= 0` for *every* field ``w`` — the residual measures only the step's own
:math:`O(\epsilon)` (forward) or :math:`O(\epsilon^2)` (symmetric, the notebook's
``bdf_weight=(0.5, 0.5)``) error, at :math:`\epsilon = 10^{-6}` in float64 below roundoff,
not whether the trajectory solves the NSE in time (MODELS.md §4.4). It is offered for
comparison only.

Arrays are channels-last: a trajectory is ``(B, X, Y, T)`` with the slices on the last
axis, ``w[b, i, j, t] = w(x = i/X, y = j/Y)``.

>>> import jax.numpy as jnp
>>> from nopx.datagen.navier_stokes import forcing_field
>>> f = forcing_field("kolmogorov", 16, 0.1, 2)    # steady: w = f / (4π²k²ν), u·∇w = 0
>>> w = jnp.repeat(jnp.asarray(f / (16 * np.pi**2 * 1e-3))[None, ..., None], 3, axis=-1)
>>> r = nse_residual(w, nu=1e-3, forcing=f, dt=0.1)
>>> r.shape, bool(jnp.abs(r).max() < 1e-6)
((1, 16, 16, 3), True)
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from nopx.datagen.navier_stokes import spectral_operators

__all__ = ["TimeDerivative", "nse_residual", "solver_time_derivative", "time_derivative_fd"]

#: How ``∂_t w`` is taken (module docstring); :func:`nse_residual` computes ``"fd"`` and
#: ``"solver"`` itself and takes the ``"spectral"`` one as an array.
TimeDerivative = Literal["spectral", "fd", "solver"]


def time_derivative_fd(w: jax.Array, dt: float) -> jax.Array:
    """``∂_t w`` of ``(..., T)`` slices ``dt`` apart: central differences, one-sided at the ends.

    Second order everywhere.

    Needs ``T >= 3``.

    >>> import jax.numpy as jnp
    >>> time_derivative_fd(jnp.arange(5.0) ** 2, 1.0).tolist()     # d/dt t² = 2t, exact
    [0.0, 2.0, 4.0, 6.0, 8.0]
    """
    if w.shape[-1] < 3:
        raise ValueError(f"finite differences in time need at least 3 slices, got {w.shape[-1]}")
    first = (-3 * w[..., :1] + 4 * w[..., 1:2] - w[..., 2:3]) / (2 * dt)
    inner = (w[..., 2:] - w[..., :-2]) / (2 * dt)
    last = (3 * w[..., -1:] - 4 * w[..., -2:-1] + w[..., -3:-2]) / (2 * dt)
    return jnp.concatenate([first, inner, last], axis=-1)


def solver_time_derivative(w: jax.Array, *, nu: float, forcing: jax.Array | np.ndarray | None,
                           dealias: bool = True) -> jax.Array:
    r"""``R(w) = −u·∇w + νΔw + f``: the ``∂_t w`` the data generator's solver gives a slice.

    The right-hand side :func:`nopx.datagen.navier_stokes.simulate` integrates (what
    torch-cfd's ±ε solver step measures as ε → 0; see the module docstring's caveat).

    Args:
      w: ``(B, X, Y, T)`` vorticity slices on the unit torus.
      nu: viscosity.
      forcing: time-constant ``f``, ``(X, Y)`` or ``(B, X, Y)``; ``None`` for none.
      dealias: the 2/3 rule of the solver: ``u`` and ``∇w`` are formed from the
        wavenumbers ``|k_i| ≤ (2/3)(n/2)`` of ``w`` and ``u·∇w`` is truncated to them (exact
        for the truncated field, so it equals the solver's Basdevant form to roundoff).

    Returns:
      ``(B, X, Y, T)`` in the dtype of ``w``.
    """
    if w.ndim != 4:
        raise ValueError(f"expected a trajectory (batch, x, y, time); got {w.shape}")
    nx, ny = w.shape[1:3]
    ops = spectral_operators(nx, ny, dealias=dealias)
    complex_dtype = jnp.result_type(w.dtype, jnp.complex64)

    def symbol(a: np.ndarray) -> jax.Array:
        return jnp.asarray(a[..., None], complex_dtype)          # broadcast over time

    # (B, X, Y//2+1, T): the slices stay on the last axis, FFTs over x and y. The advective
    # form u ∂_x w + v ∂_y w, not the solver's Basdevant form: the same to roundoff when
    # dealiased, and the plain u·∇w of the grid field when not.
    w_hat = jnp.fft.rfft2(w, axes=(1, 2))
    w_kept = w_hat * symbol(ops.keep)
    u, v, w_x, w_y = (jnp.fft.irfft2(w_kept * symbol(d), s=(nx, ny), axes=(1, 2))
                      for d in (*ops.velocity, *ops.gradient))
    convection = jnp.fft.rfft2(u * w_x + v * w_y, axes=(1, 2)) * symbol(ops.keep)
    rhs = -convection - nu * symbol(ops.minus_lap) * w_hat
    if forcing is not None:
        f = jnp.asarray(forcing, w.dtype)
        f_hat = jnp.fft.rfft2(f, axes=(-2, -1))
        rhs = rhs + (f_hat[..., None] if f.ndim == 2 else f_hat[:, :, :, None])
    return jnp.fft.irfft2(rhs, s=(nx, ny), axes=(1, 2)).astype(w.dtype)


def nse_residual(w: jax.Array, *, nu: float, forcing: jax.Array | np.ndarray | None, dt: float,
                 time_derivative: TimeDerivative | jax.Array = "fd",
                 dealias: bool = True) -> jax.Array:
    r"""The residual ``r = ∂_t w − R(w)`` of a vorticity trajectory on the unit torus.

    ``R`` is :func:`solver_time_derivative` (the solver's right-hand side).

    Args:
      w: ``(B, X, Y, T)`` vorticity slices, ``dt`` apart in time (module docstring).
      nu: viscosity.
      forcing: time-constant ``f``, ``(X, Y)`` or ``(B, X, Y)``; ``None`` for none.
      dt: time between two slices.
      time_derivative: ``"fd"`` (central differences between the slices), ``"solver"``
        (``R(w)``: the residual vanishes for every ``w``, module docstring), or the array
        ``∂_t w`` itself, ``(B, X, Y, T)`` per unit time — e.g. the exact derivative of the
        SFNO output's temporal series. ``"spectral"`` needs that series, which the slices
        alone do not determine: pass the array.
      dealias: the solver's 2/3 rule (:func:`solver_time_derivative`); a trajectory of
        :func:`nopx.datagen.navier_stokes.simulate` leaves only its time-stepping error.

    Returns:
      ``r``, shape ``(B, X, Y, T)``, in the dtype of ``w``.
    """
    rhs = solver_time_derivative(w, nu=nu, forcing=forcing, dealias=dealias)
    if isinstance(time_derivative, str):
        if time_derivative == "spectral":
            raise ValueError("time_derivative='spectral' differentiates the SFNO's temporal "
                             "series, which the slices alone do not determine: take it from "
                             "nopx.refine.output_cut(...).head and pass the array")
        if time_derivative not in ("fd", "solver"):
            raise ValueError(f"unknown time_derivative {time_derivative!r}; choose 'fd', "
                             f"'solver' or pass the array ∂_t w")
        w_t = time_derivative_fd(w, dt) if time_derivative == "fd" else rhs
    else:
        w_t = time_derivative
        if w_t.shape != w.shape:
            raise ValueError(f"time_derivative has shape {w_t.shape}, expected {w.shape}")
    return (w_t - rhs).astype(w.dtype)
