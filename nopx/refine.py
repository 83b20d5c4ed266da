r"""Spectral-Refiner: fine-tune an SFNO's output layer on one trajectory by its NSE residual.

Stage 2 of Cao et al. 2024 (MODELS.md §4.4). For each test trajectory, with no ground truth:

1. run the trained :class:`~nopx.models.SFNO` once and cache the latent before its output
   operator (everything but the last spectral convolution is frozen);
2. enlarge that convolution's modes (up to the full grid), the trained low modes copied in,
   the new ones starting tiny (:func:`enlarge_output_modes`);
3. minimise the :math:`H^{-1}` norm of the Navier–Stokes residual of the predicted trajectory
   (:func:`nse_residual`, :func:`h_minus1`) over that layer's weights and spectral bias with
   Adam (two learning rates), in float64 (:func:`refine`).

The map from the output layer's parameters to the prediction is affine, so the residual
is a quadratic function of them (the paper calls the problem convex; MODELS.md §4.4).

The residual of a trajectory :math:`w` on the unit torus is

.. math::
    r = \partial_t w + u\cdot\nabla w - \nu\Delta w - f, \qquad -\Delta\psi = w,\quad
    u = (\partial_y\psi, -\partial_x\psi),

the convention of :mod:`nopx.datagen.navier_stokes`, with the same 2/3-rule dealiasing of
:math:`u\cdot\nabla w`. Its size is the functional a-posteriori estimator

.. math::
    \eta(w) = \Big(\frac1T \sum_t \sum_k \frac{|\hat r_k(t)|^2}{\alpha + 4\pi^2|k|^2}\Big)^{1/2}

with :math:`\hat r` the forward-normalised FFT (Parseval: :math:`\sum_k|\hat r_k|^2 =
\lVert r\rVert^2_{L^2}`).

**Time derivative.** torch-cfd takes :math:`\partial_t w` from a ±1e-6 solver step started at
each predicted slice, which measures only the mismatch of that step, not whether the
trajectory solves the NSE in time (MODELS.md §4.4 caveat). Here it comes from the predicted
trajectory itself: ``"spectral"`` is the exact time derivative of the temporal Fourier
series the SFNO output layer produces (its slices are samples of that series), ``"fd"``
central differences between the predicted slices (second order, one-sided at the ends).

Arrays are channels-last: a trajectory is ``(B, X, Y, T)`` with the slices on the last axis.

Usage (FNO's ν = 1e-3 data, slices 1 time unit apart, refined at the test resolution):

.. code-block:: python

    from nopx.datagen.navier_stokes import forcing_field
    result = refine(model, x_test, out_steps=40, nu=1e-3, forcing=forcing_field("fno", 256),
                    dt=1.0, modes=(64, 64, 6), target=y_test)
    result.rel_l2_before, result.rel_l2_after        # (B,) each
    result.residual_history[[0, -1]]                 # η before and after, (2, B)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nopx.layers.spectral_conv_st import SpaceTimeSpectralConv
from nopx.losses import relative_sobolev, sobolev_norm
from nopx.models.sfno import SFNO, output_operator

TimeDerivative = Literal["spectral", "fd"]

#: Spectral-Refiner's :math:`\alpha` in the :math:`H^{-1}` residual norm.
ALPHA = 10 ** -1.5


def _wavenumbers(nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer wavenumbers on the ``rfft2`` grid ``(nx, ny//2 + 1)`` (float64, numpy)."""
    return (np.fft.fftfreq(nx, 1.0 / nx)[:, None], np.fft.rfftfreq(ny, 1.0 / ny)[None, :])


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


def nse_residual(w: jax.Array, *, nu: float, forcing: jax.Array | np.ndarray | None, dt: float,
                 time_derivative: TimeDerivative | jax.Array = "fd",
                 dealias: bool = True) -> jax.Array:
    r"""The residual ``r = ∂_t w + u·∇w − νΔw − f`` of a vorticity trajectory on the unit torus.

    Args:
      w: ``(B, X, Y, T)`` vorticity slices, ``dt`` apart in time (module docstring).
      nu: viscosity.
      forcing: time-constant ``f``, ``(X, Y)`` or ``(B, X, Y)``; ``None`` for none.
      dt: time between two slices.
      time_derivative: ``"fd"`` (central differences between the slices), or the array
        ``∂_t w`` itself, ``(B, X, Y, T)`` per unit time — e.g. the exact derivative of the
        SFNO output's temporal series (:func:`predict`). ``"spectral"`` needs that series,
        which the slices alone do not determine: use :func:`predict` and pass the array.
      dealias: 2/3 rule on ``u·∇w`` as in the data generator: ``u`` and ``∇w`` are formed
        from the wavenumbers ``|k_i| ≤ (2/3)(n/2)`` of ``w`` and the product is truncated to
        them (exact for the truncated field, so a trajectory of
        :func:`nopx.datagen.navier_stokes.simulate` leaves only its time-stepping error).

    Returns:
      ``r``, shape ``(B, X, Y, T)``, in the dtype of ``w``.
    """
    if w.ndim != 4:
        raise ValueError(f"nse_residual expects a trajectory (batch, x, y, time); got {w.shape}")
    if isinstance(time_derivative, str):
        if time_derivative == "spectral":
            raise ValueError("time_derivative='spectral' differentiates the SFNO's temporal "
                             "series, which the slices alone do not determine: compute it "
                             "with nopx.refine.predict(..., time_derivative=True) and pass "
                             "the array")
        if time_derivative != "fd":
            raise ValueError(f"unknown time_derivative {time_derivative!r}; choose 'fd' or "
                             f"pass the array ∂_t w")
        w_t = time_derivative_fd(w, dt)
    else:
        w_t = time_derivative
        if w_t.shape != w.shape:
            raise ValueError(f"time_derivative has shape {w_t.shape}, expected {w.shape}")
    nx, ny = w.shape[1:3]
    kx, ky = _wavenumbers(nx, ny)
    k_sq = 4 * np.pi ** 2 * (kx ** 2 + ky ** 2)
    inv_lap = np.divide(1.0, k_sq, out=np.zeros_like(k_sq), where=k_sq > 0)
    keep = ((np.abs(kx) <= (2 / 3) * (nx // 2)) & (np.abs(ky) <= (2 / 3) * (ny // 2))
            if dealias else np.ones_like(k_sq, dtype=bool))
    complex_dtype = jnp.result_type(w.dtype, jnp.complex64)

    def symbol(a: np.ndarray) -> jax.Array:
        return jnp.asarray(a[..., None], complex_dtype)          # broadcast over time

    # (B, X, Y//2+1, T): the slices stay on the last axis, FFTs over x and y.
    w_hat = jnp.fft.rfft2(w, axes=(1, 2))
    w_kept = w_hat * symbol(keep)
    derivatives = [2j * np.pi * ky * inv_lap, -2j * np.pi * kx * inv_lap,    # u, v from ψ
                   2j * np.pi * kx, 2j * np.pi * ky]                          # ∂_x w, ∂_y w
    u, v, w_x, w_y = (jnp.fft.irfft2(w_kept * symbol(d), s=(nx, ny), axes=(1, 2))
                      for d in derivatives)
    convection = jnp.fft.rfft2(u * w_x + v * w_y, axes=(1, 2)) * symbol(keep)
    r_hat = jnp.fft.rfft2(w_t, axes=(1, 2)) + convection + nu * symbol(k_sq) * w_hat
    if forcing is not None:
        f = jnp.asarray(forcing, w.dtype)
        f_hat = jnp.fft.rfft2(f, axes=(-2, -1))
        r_hat = r_hat - (f_hat[..., None] if f.ndim == 2 else f_hat[:, :, :, None])
    return jnp.fft.irfft2(r_hat, s=(nx, ny), axes=(1, 2)).astype(w.dtype)


def h_minus1(r: jax.Array, alpha: float = ALPHA, *, torchcfd_compat: bool = False) -> jax.Array:
    r"""Per-trajectory :math:`H^{-1}_\alpha` norm :math:`\eta` of a residual (module docstring).

    ``r (B, X, Y, T) -> (B,)``.

    :func:`nopx.losses.sobolev_norm` with ``s = -1``, ``spacetime=True``,
    ``time_average=True`` on each trajectory. ``torchcfd_compat=True`` gives the value
    torch-cfd's fine-tuning prints (its weight :math:`(\alpha + |\xi|^2)^{-1/2}` on the
    unnormalised coefficients, MODELS.md §7.3).

    >>> import jax.numpy as jnp
    >>> r = jnp.ones((2, 8, 8, 3))                              # the constant 1: η = 1/sqrt(α)
    >>> [round(float(v), 6) for v in h_minus1(r, alpha=0.25)]
    [2.0, 2.0]
    """
    def one(trajectory: jax.Array) -> jax.Array:
        return sobolev_norm(trajectory[None], -1.0, alpha=alpha, spacetime=True,
                            time_average=True, torchcfd_compat=torchcfd_compat)

    return jax.vmap(one)(r)


def relative_l2(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Per-trajectory relative :math:`L^2` error in space and time, ``(B,)``.

    ``sqrt(Σ_t ‖pred(t) − target(t)‖²) / sqrt(Σ_t ‖target(t)‖²)`` (Bochner; torch-cfd's
    printed "relative L2" is this divided by ``sqrt(T)`` and with its weight quirk, see
    :func:`nopx.losses.relative_sobolev` with ``torchcfd_compat=True``).
    """
    def one(p: jax.Array, t: jax.Array) -> jax.Array:
        return relative_sobolev(p[None], t[None], 0.0, spacetime=True)

    return jax.vmap(one)(pred, target)


def _xavier_bound(shape: Sequence[int], modes: Sequence[int], gain: float) -> float:
    """The bound of torch's ``xavier_uniform_`` on one of torch-cfd's corner tensors
    ``(C_in, C_out, m_x, m_y, m_t, 2)``; ``shape`` is ours, ``(..., C_in, C_out)``."""
    receptive = 2 * math.prod(modes)
    return gain * math.sqrt(6.0 / ((shape[-2] + shape[-1]) * receptive))


def _corner_index(old: Sequence[int], new: Sequence[int]) -> tuple[np.ndarray, ...]:
    """Where the stored coefficients of modes ``old`` sit among those of ``new`` (both ends of
    each spatial axis: frequencies ``0..m-1`` and ``-m..-1``; the first bins in time)."""
    index = [np.concatenate([np.arange(m), np.arange(2 * big - m, 2 * big)])
             for m, big in zip(old[:-1], new[:-1])]
    return np.ix_(*index, np.arange(old[-1]))


def enlarge_output_modes(model: SFNO, modes: Sequence[int], *, delta: float | None = None,
                         gain: float = 1e-6, seed: int = 0) -> SFNO:
    """A copy of ``model`` whose output spectral convolution keeps ``modes`` (``(m_x, m_y, m_t)``).

    The trained weights and biases fill the matching blocks (spatial frequencies
    ``-m..m-1`` of the old modes, temporal bins ``0..m_t-1``); the other weights start as
    torch's Xavier-uniform with ``gain`` (tiny: the copy reproduces the model), the other
    biases at zero. ``m_x = X/2, m_y = Y/2`` is the full grid.

    ``delta`` (default: the model's) is the new bias scale. Unlike torch-cfd, the copied
    biases are rescaled by ``old δ / new δ`` so the bias term ``δ·b`` is unchanged: with
    ``delta`` changed the copy still reproduces the model (to the Xavier entries' size); only
    the bias's effective learning rate (``δ`` times Adam's step) changes.
    """
    old = model.output_conv
    modes = tuple(int(m) for m in modes)
    if len(modes) != len(old.n_modes) or any(m < o for m, o in zip(modes, old.n_modes)):
        raise ValueError(f"modes must have {len(old.n_modes)} entries, each at least the "
                         f"trained {old.n_modes}; got {modes}")
    delta = old.delta if delta is None else float(delta)
    dtype = old.weight_real[...].dtype
    # Built abstractly, then filled in numpy: a one-off that need not compile anything.
    conv = nnx.eval_shape(lambda: SpaceTimeSpectralConv(
        old.in_channels, old.out_channels, modes, out_steps=old.out_steps, bias=True,
        delta=delta, temporal_padding=old.temporal_padding, fft_norm=old.fft_norm,
        transform=old.transform, param_dtype=dtype, rngs=nnx.Rngs(0)))
    index = _corner_index(old.n_modes, modes)
    rng = np.random.default_rng(seed)
    for part in ("real", "imag"):
        shape = conv.weight_real.shape
        bound = _xavier_bound(shape, modes, gain)
        weight = rng.uniform(-bound, bound, shape)
        weight[index] = getattr(old, f"weight_{part}")[...]
        bias = np.zeros(conv.bias_real.shape)
        if old.bias_real is not None:
            bias[index] = np.asarray(getattr(old, f"bias_{part}")[...]) * (old.delta / delta)
        setattr(conv, f"weight_{part}", nnx.Param(jnp.asarray(weight, dtype)))
        setattr(conv, f"bias_{part}", nnx.Param(jnp.asarray(bias, dtype)))
    enlarged = nnx.clone(model)
    enlarged.output_conv = conv
    return enlarged


def predict(conv: SpaceTimeSpectralConv, latent: jax.Array, x: jax.Array, out_steps: int,
            dt: float) -> tuple[jax.Array, jax.Array]:
    """Prediction ``(B, X, Y, out_steps)`` and its exact time derivative per unit time.

    ``latent`` is :meth:`SFNO.trunk` of ``x``; ``dt`` the time between output slices.
    """
    w, dw = output_operator(conv, latent, x, out_steps, time_derivative=True)
    return w, dw / dt


@dataclasses.dataclass(frozen=True)
class RefineResult:
    """What :func:`refine` returns (float64 numpy arrays; ``B`` trajectories).

    Attributes:
      prediction: refined trajectories ``(B, X, Y, out_steps)``.
      initial_prediction: the model's prediction before refining (same shape).
      residual_history: :math:`\\eta` per iterate ``(iterations + 1, B)``; row 0 is before
        the first step, the last row belongs to ``prediction``.
      rel_l2_before, rel_l2_after: :func:`relative_l2` to the ``target`` per trajectory
        ``(B,)``, or ``None`` without a target.
      output_params: the refined output layer's parameters, one copy per trajectory
        (leading axis ``B``), as an ``nnx.State`` of float64 numpy arrays.
    """

    prediction: np.ndarray
    initial_prediction: np.ndarray
    residual_history: np.ndarray
    rel_l2_before: np.ndarray | None
    rel_l2_after: np.ndarray | None
    output_params: nnx.State


def _label_biases(params: nnx.State) -> nnx.State:
    """optax.multi_transform labels: ``"bias"`` for the spectral bias, ``"weight"`` otherwise."""
    def label(path: tuple, _: jax.Array) -> str:
        names = [key.key for key in path if isinstance(key, jax.tree_util.DictKey)]
        return "bias" if names and str(names[-1]).startswith("bias") else "weight"

    return jax.tree_util.tree_map_with_path(label, params)


def _as_float64(tree):
    return jax.tree.map(lambda a: a.astype(jnp.float64)
                        if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def refine(model: SFNO, x: jax.Array | np.ndarray, *, out_steps: int, nu: float,
           forcing: jax.Array | np.ndarray | None, dt: float, modes: Sequence[int],
           iterations: int = 50, lr_weight: float = 1e-4, lr_bias: float = 0.2,
           alpha: float = ALPHA, time_derivative: TimeDerivative = "spectral",
           delta: float | None = 1.0, target: jax.Array | np.ndarray | None = None,
           gain: float = 1e-6, seed: int = 0) -> RefineResult:
    """Spectral-Refiner on each trajectory of ``x`` separately (module docstring).

    Every trajectory gets its own copy of the enlarged output layer (the trunk is run once,
    in float64, and frozen); the copies are optimised together — the loss is the sum of the
    per-trajectory :math:`\\eta`, and Adam is elementwise, so this is exactly one Adam run per
    trajectory — with ``optax.multi_transform``: Adam at ``lr_bias`` on the spectral bias,
    at ``lr_weight`` on the spectral weights. The computation is float64 (scoped, not global).
    Memory grows with ``B`` (all copies and their residuals live at once): pass large test
    sets in chunks.

    Args:
      model: a trained :class:`~nopx.models.SFNO` (left unchanged).
      x: input slices ``(B, X, Y, T_in)`` at the resolution to refine on.
      out_steps: number of predicted slices.
      nu, forcing, dt: the PDE (:func:`nse_residual`); ``dt`` is the time between slices.
      modes: ``(m_x, m_y, m_t)`` of the enlarged output layer (:func:`enlarge_output_modes`;
        the reference uses ``(64, 64, 6)`` at 256²).
      iterations: Adam steps.
      lr_weight, lr_bias: the two learning rates.
      alpha: :math:`\\alpha` of the :math:`H^{-1}` norm.
      time_derivative: ``"spectral"`` or ``"fd"`` (module docstring).
      delta: bias scale of the enlarged layer (the reference refines with 1; ``None`` keeps
        the model's).
      target: optional ground truth ``(B, X, Y, out_steps)`` for the relative errors.
      gain: Xavier gain of the new modes.
      seed: random seed of the new modes.

    Returns:
      A :class:`RefineResult`.
    """
    if time_derivative not in ("spectral", "fd"):
        raise ValueError(f"unknown time_derivative {time_derivative!r}; choose 'spectral' or 'fd'")
    enlarged = enlarge_output_modes(model, modes, delta=delta, gain=gain, seed=seed)
    graphdef, state = nnx.split(enlarged)
    with jax.enable_x64(True):
        model64 = nnx.merge(graphdef, _as_float64(state))
        x64 = jnp.asarray(x, jnp.float64)
        grid = x64.shape[1:3]
        f64 = jnp.zeros(grid) if forcing is None else jnp.asarray(forcing, jnp.float64)
        f64 = jnp.broadcast_to(f64, (x64.shape[0], *grid))           # one forcing per trajectory
        latent = nnx.jit(lambda m, v: m.trunk(v))(model64, x64)
        conv_def, conv_params = nnx.split(model64.output_conv, nnx.Param)
        batch = x64.shape[0]
        stacked = jax.tree.map(lambda p: jnp.broadcast_to(p, (batch, *p.shape)), conv_params)
        optimizer = optax.multi_transform(
            {"weight": optax.adam(lr_weight), "bias": optax.adam(lr_bias)},
            _label_biases(conv_params))

        def one(params: nnx.State, latent_b: jax.Array, x_b: jax.Array, f_b: jax.Array):
            conv = nnx.merge(conv_def, params)
            w, w_t = predict(conv, latent_b[None], x_b[None], out_steps, dt)
            r = nse_residual(w, nu=nu, forcing=f_b, dt=dt,
                             time_derivative=w_t if time_derivative == "spectral" else "fd")
            return h_minus1(r, alpha)[0], w[0]

        def etas(params: nnx.State):
            eta, w = jax.vmap(one)(params, latent, x64, f64)
            return jnp.sum(eta), (eta, w)

        @jax.jit
        def run(params: nnx.State):
            def step(carry, _):
                params, opt_state = carry
                grads, (eta, _) = jax.grad(etas, has_aux=True)(params)
                updates, opt_state = optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), eta

            _, (_, initial) = etas(params)
            (params, _), history = jax.lax.scan(step, (params, optimizer.init(params)), None,
                                                length=iterations)
            _, (eta, refined) = etas(params)
            return params, jnp.concatenate([history, eta[None]]), initial, refined

        params, history, initial, refined = run(stacked)
        before = after = None
        if target is not None:
            target64 = jnp.asarray(target, jnp.float64)
            before, after = (np.asarray(jax.jit(relative_l2)(w, target64))
                             for w in (initial, refined))
        return RefineResult(prediction=np.asarray(refined), initial_prediction=np.asarray(initial),
                            residual_history=np.asarray(history), rel_l2_before=before,
                            rel_l2_after=after, output_params=jax.tree.map(np.asarray, params))
