r"""Spectral-Refiner: fine-tune a model's spectral output layer per trajectory by its NSE residual.

Stage 2 of Cao et al. 2024 (MODELS.md §4.4). For each trajectory, with no ground truth:

1. cut the trained model before its last spectral convolution (:func:`output_cut`) and cache
   the input of that part once (everything before the cut is frozen);
2. enlarge the convolution's modes (up to the full grid), the trained modes copied in, the
   new ones starting tiny;
3. minimise the :math:`H^{-1}` norm of the Navier–Stokes residual of the predicted trajectory
   (:func:`~nopx.datagen.navier_stokes_residual.nse_residual`, :func:`h_minus1`) over that
   layer's parameters with Adam (two learning rates), in float64, and keep the iterate with
   the smallest residual (:func:`refine`).

Which layer (``output_cut``):

* :class:`~nopx.models.SFNO`: its output operator's spectral convolution (weights and
  per-mode spectral bias), as in the paper. The map from those parameters to the
  prediction is affine, so the residual is a quadratic function of them (the paper calls
  the problem convex).
* :class:`~nopx.models.FNO` / :class:`~nopx.models.TFNO` in space-time mode (FNO-3D: the
  input slices repeated along a time axis, convolutions over ``(x, y, t)``): the last
  block's spectral convolution over ``(x, y, t)`` (a TFNO's factorized weight rebuilt
  dense; compression is no aim for a per-trajectory copy). Everything else — that block's
  skip and channel MLP, and the projection MLP after it — stays frozen. Those are
  non-linear, so the prediction is *not* affine in the refined parameters and the problem
  is not convex; it is still the last layer that sees the whole space-time spectrum, the
  only place where modes can be added. The FNO has no per-mode bias (its bias is one
  constant per channel) and no temporal series: its time derivative is ``"fd"``.

The residual :math:`r = \partial_t w - R(w)` of a predicted trajectory is that of the
data generator's equation, :func:`~nopx.datagen.navier_stokes_residual.nse_residual` (the
equation, its conventions and the time-derivative choices live there, with the solver). Its
size is the functional a-posteriori estimator

.. math::
    \eta(w) = \Big(\frac1T \sum_t \sum_k \frac{|\hat r_k(t)|^2}{\alpha + 4\pi^2|k|^2}\Big)^{1/2}

with :math:`\hat r` the forward-normalised FFT (Parseval: :math:`\sum_k|\hat r_k|^2 =
\lVert r\rVert^2_{L^2}`).

**Time derivative.** ``"spectral"`` is the exact time derivative of the temporal Fourier
series the SFNO output layer produces (its slices are samples of that series); ``"fd"``
central differences between the predicted slices. torch-cfd's ``"solver"`` derivative makes
the residual vanish for *every* field (the caveat in
:mod:`~nopx.datagen.navier_stokes_residual`), so :func:`refine` refuses it.

Arrays are channels-last: a trajectory is ``(B, X, Y, T)`` with the slices on the last axis.

Usage (FNO's ν = 1e-3 data, slices 1 time unit apart, refined at the test resolution):

.. code-block:: python

    from nopx.datagen.navier_stokes import forcing_field
    result = refine(model, x_test, out_steps=40, nu=1e-3, forcing=forcing_field("fno", 256),
                    dt=1.0, modes=(64, 64, 6), target=y_test)
    result.rel_l2_before, result.rel_l2_after        # (B,) each
    result.residual_before, result.residual_after    # η of the prediction and of the best iterate
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nopx.datagen.navier_stokes_residual import TimeDerivative, nse_residual
from nopx.layers.fourier import full_axis_frequencies, kept_shape
from nopx.layers.spectral_conv import SpectralConv
from nopx.layers.spectral_conv_st import SpaceTimeSpectralConv
from nopx.losses import relative_sobolev, sobolev_norm
from nopx.models.fno import FNO
from nopx.models.sfno import SFNO, output_operator

#: Spectral-Refiner's :math:`\alpha` in the :math:`H^{-1}` residual norm.
ALPHA = 10 ** -1.5


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


def _xavier_bound(shape: Sequence[int], modes: int, gain: float) -> float:
    """The bound of torch's ``xavier_uniform_`` on a torch-cfd corner tensor ``(C_in, C_out,
    *modes, 2)`` (``modes`` entries per channel pair); ``shape`` is ours, ``(..., C_in, C_out)``."""
    return gain * math.sqrt(6.0 / ((shape[-2] + shape[-1]) * 2 * modes))


def _embedding(old: Sequence[int], new: Sequence[int], complex_axes: int) -> tuple[np.ndarray, ...]:
    """Where the stored coefficients of a spectral weight of shape ``old`` sit in one of shape
    ``new`` (the mode axes only). The first ``complex_axes`` axes store frequencies
    ``0, 1, ..., -2, -1`` (:func:`~nopx.layers.fourier.full_axis_frequencies`: frequency ``k``
    lives at ``k mod size``); the others are real-FFT or temporal bins ``0, 1, ...``.

    >>> [a.ravel().tolist() for a in _embedding((4, 3), (8, 5), 1)]
    [[0, 1, 6, 7], [0, 1, 2]]
    """
    index = [full_axis_frequencies(m) % big for m, big in zip(old[:complex_axes], new)]
    index += [np.arange(m) for m in old[complex_axes:]]
    return np.ix_(*index)


def _embed(old: np.ndarray, new: np.ndarray, complex_axes: int, mode_axes: int) -> np.ndarray:
    """``new`` with ``old``'s coefficients written at their frequencies (:func:`_embedding`;
    the first ``mode_axes`` axes are mode axes, the rest channels)."""
    new[_embedding(old.shape[:mode_axes], new.shape[:mode_axes], complex_axes)] = old
    return new


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
    rng = np.random.default_rng(seed)
    spatial, axes = len(modes) - 1, len(modes)
    bound = _xavier_bound(conv.weight_real.shape, math.prod(modes), gain)
    for part in ("real", "imag"):
        weight = _embed(np.asarray(getattr(old, f"weight_{part}")[...]),
                        rng.uniform(-bound, bound, conv.weight_real.shape), spatial, axes)
        bias = np.zeros(conv.bias_real.shape)
        if old.bias_real is not None:
            bias = _embed(np.asarray(getattr(old, f"bias_{part}")[...]) * (old.delta / delta),
                          bias, spatial, axes)
        setattr(conv, f"weight_{part}", nnx.Param(jnp.asarray(weight, dtype)))
        setattr(conv, f"bias_{part}", nnx.Param(jnp.asarray(bias, dtype)))
    enlarged = nnx.clone(model)
    enlarged.output_conv = conv
    return enlarged


def enlarge_spectral_conv(conv: SpectralConv, n_modes: Sequence[int], *, gain: float = 1e-6,
                          seed: int = 0) -> SpectralConv:
    """A dense copy of an FNO :class:`~nopx.layers.SpectralConv` that keeps ``n_modes``.

    ``n_modes`` in the layer's convention (all signs counted; the grid size is the full
    axis). The trained weight (a factorized one rebuilt dense) fills the matching
    frequencies, the new entries start as torch's Xavier-uniform with ``gain``, the channel
    bias is copied.

    >>> conv = SpectralConv(2, 3, (4, 4), rngs=nnx.Rngs(0))
    >>> enlarge_spectral_conv(conv, (8, 8)).weight_real.shape
    (8, 5, 2, 3)
    """
    n_modes = tuple(int(m) for m in n_modes)
    if len(n_modes) != len(conv.n_modes) or any(m < o for m, o in zip(n_modes, conv.n_modes)):
        raise ValueError(f"modes must have {len(conv.n_modes)} entries, each at least the "
                         f"trained {conv.n_modes}; got {n_modes}")
    if conv.weight is None:
        weight = np.asarray(jax.lax.complex(conv.weight_real[...], conv.weight_imag[...]))
        dtype = conv.weight_real[...].dtype
    else:
        weight = np.asarray(conv.weight.to_dense(conv.layer))
        dtype = jnp.real(weight).dtype
    new = nnx.eval_shape(lambda: SpectralConv(
        conv.in_channels, conv.out_channels, n_modes, bias=conv.bias is not None,
        fft_norm=conv.fft_norm, transform=conv.transform, param_dtype=dtype, rngs=nnx.Rngs(0)))
    shape = (*kept_shape(n_modes), conv.in_channels, conv.out_channels)
    rng = np.random.default_rng(seed)
    bound = _xavier_bound(shape, math.prod(kept_shape(n_modes)), gain)
    for part, values in (("real", weight.real), ("imag", weight.imag)):
        enlarged = _embed(values, rng.uniform(-bound, bound, shape), len(n_modes) - 1, len(n_modes))
        setattr(new, f"weight_{part}", nnx.Param(jnp.asarray(enlarged, dtype)))
    if conv.bias is not None:
        new.bias = nnx.Param(jnp.asarray(conv.bias[...], dtype))
    return new


Head = Callable[[nnx.Module, jax.Array, jax.Array], tuple[jax.Array, jax.Array | None]]


@dataclasses.dataclass(frozen=True)
class OutputCut:
    """A model cut before its spectral output layer, that layer enlarged (:func:`output_cut`).

    Attributes:
      model: a copy of the model with the enlarged layer in place.
      layer: the path of that layer's module in ``model`` (``("output_conv",)``, ...).
      features: ``(model, x) -> z``: the frozen part, run once per trajectory batch.
      head: ``(model, z, x) -> (w, w_t)``: the prediction ``(B, X, Y, T)`` and, where the
        output is a temporal series, its exact time derivative per output step (else
        ``None``).
    """

    model: nnx.Module
    layer: tuple[str | int, ...]
    features: Callable[[nnx.Module, jax.Array], jax.Array]
    head: Head


def refinable(model: nnx.Module) -> str | None:
    """Why ``model`` cannot be refined, or ``None`` when it can (:func:`output_cut`)."""
    if isinstance(model, SFNO):
        return None
    if isinstance(model, FNO):
        if len(model.n_modes) != 3 or model.out_channels != 1:
            return ("an FNO/TFNO is refined in space-time mode: 3 axes (x, y, t) and one "
                    f"output channel; this one has n_modes {model.n_modes} and "
                    f"{model.out_channels} output channels")
        return None
    return (f"{type(model).__name__} has no spectral output layer Spectral-Refiner applies to; "
            "it refines an sfno, or an fno/tfno in space-time mode (FNO-3D)")


def default_modes(model: nnx.Module, grid: Sequence[int], out_steps: int) -> tuple[int, ...]:
    """The enlarged modes when none are given: every spatial frequency of ``grid``; in time,
    one temporal bin more than trained (SFNO, per-sign modes) or the trained count (FNO)."""
    nx, ny = grid
    if isinstance(model, SFNO):
        return nx // 2, ny // 2, int(model.output_conv.n_modes[-1]) + 1
    return nx, ny, int(model.blocks[-1].conv.n_modes[-1])


def output_cut(model: nnx.Module, modes: Sequence[int], *, out_steps: int,
               delta: float | None = 1.0, gain: float = 1e-6, seed: int = 0) -> OutputCut:
    """Cut ``model`` at its spectral output layer and enlarge that layer to ``modes``.

    ``modes`` in the layer's own convention: per sign in space, temporal bins for the SFNO
    (:func:`enlarge_output_modes`, with ``delta`` the bias scale); all signs counted for an
    FNO/TFNO (:func:`enlarge_spectral_conv`). ``x`` below is the input ``(B, X, Y, T_in)``.

    Raises:
      ValueError: a model :func:`refinable` refuses.
    """
    reason = refinable(model)
    if reason is not None:
        raise ValueError(reason)
    if isinstance(model, SFNO):
        return OutputCut(
            enlarge_output_modes(model, modes, delta=delta, gain=gain, seed=seed),
            ("output_conv",), lambda m, x: m.trunk(x),
            lambda m, z, x: output_operator(m.output_conv, z, x, out_steps, time_derivative=True))
    enlarged = nnx.clone(model)
    last = len(enlarged.blocks) - 1
    enlarged.blocks[last].conv = enlarge_spectral_conv(model.blocks[last].conv, modes,
                                                       gain=gain, seed=seed)

    def features(m: nnx.Module, x: jax.Array) -> jax.Array:
        # The space-time task (nopx.training.tasks.spacetime): the input slices repeated
        # along a time axis of out_steps.
        return m.trunk(jnp.broadcast_to(x[..., None, :], (*x.shape[:-1], out_steps, x.shape[-1])))

    return OutputCut(enlarged, ("blocks", last, "conv"), features,
                     lambda m, z, x: (m.head(z, (*x.shape[1:-1], out_steps))[..., 0], None))


@dataclasses.dataclass(frozen=True)
class RefineResult:
    """What :func:`refine` returns (float64 numpy arrays; ``B`` trajectories).

    Attributes:
      prediction: the refined trajectories ``(B, X, Y, out_steps)``: per trajectory, the
        iterate with the smallest residual (the initial prediction included).
      initial_prediction: the model's prediction before refining (same shape).
      residual_history: :math:`\\eta` per iterate ``(iterations + 1, B)``; row 0 is before
        the first step.
      best_iteration: ``(B,)`` the row of ``residual_history`` that ``prediction`` is.
      rel_l2_before, rel_l2_after: :func:`relative_l2` to the ``target`` per trajectory
        ``(B,)``, or ``None`` without a target.
      output_params: the refined layer's parameters at the best iterate, one copy per
        trajectory (leading axis ``B``), as an ``nnx.State`` of float64 numpy arrays.
    """

    prediction: np.ndarray
    initial_prediction: np.ndarray
    residual_history: np.ndarray
    best_iteration: np.ndarray
    rel_l2_before: np.ndarray | None
    rel_l2_after: np.ndarray | None
    output_params: nnx.State

    @property
    def residual_before(self) -> np.ndarray:
        """:math:`\\eta` of the model's prediction, ``(B,)``."""
        return self.residual_history[0]

    @property
    def residual_after(self) -> np.ndarray:
        """:math:`\\eta` of ``prediction``, ``(B,)``: never above :attr:`residual_before`."""
        return np.take_along_axis(self.residual_history, self.best_iteration[None], 0)[0]


def _labels(params: nnx.State) -> nnx.State:
    """optax.multi_transform labels: ``"bias"`` for the per-mode spectral bias of a
    :class:`SpaceTimeSpectralConv`, ``"weight"`` for everything else (an FNO's channel bias
    included: it is not a per-mode source term)."""
    def label(path: tuple, _: jax.Array) -> str:
        names = [key.key for key in path if isinstance(key, jax.tree_util.DictKey)]
        return "bias" if names and names[-1] in ("bias_real", "bias_imag") else "weight"

    return jax.tree_util.tree_map_with_path(label, params)


def _as_float64(tree: Any) -> Any:
    return jax.tree.map(lambda a: a.astype(jnp.float64)
                        if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def _select(better: jax.Array, new: Any, old: Any) -> Any:
    """Per trajectory (leading axis), ``new`` where ``better`` else ``old``."""
    return jax.tree.map(lambda a, b: jnp.where(better.reshape(-1, *[1] * (a.ndim - 1)), a, b),
                        new, old)


def _at(state: nnx.State, path: Sequence[str | int]) -> nnx.State:
    """The sub-state at ``path``."""
    for key in path:
        state = state[key]
    return state


def refine(model: nnx.Module, x: jax.Array | np.ndarray, *, out_steps: int, nu: float,
           forcing: jax.Array | np.ndarray | None, dt: float, modes: Sequence[int] | None = None,
           iterations: int = 50, lr_weight: float = 1e-4, lr_bias: float = 0.2,
           alpha: float = ALPHA, time_derivative: TimeDerivative = "spectral",
           delta: float | None = 1.0, target: jax.Array | np.ndarray | None = None,
           normalizers: tuple[Any, Any] | None = None, anchor: bool = False,
           gain: float = 1e-6, seed: int = 0) -> RefineResult:
    """Spectral-Refiner on each trajectory of ``x`` separately (module docstring).

    Every trajectory gets its own copy of the enlarged output layer (the part before it is
    run once, in float64, and frozen); the copies are optimised together — the loss is the
    sum of the per-trajectory :math:`\\eta`, and Adam is elementwise, so this is exactly one
    Adam run per trajectory — with ``optax.multi_transform``: Adam at ``lr_bias`` on the
    spectral bias, at ``lr_weight`` on the rest. Each trajectory keeps its iterate with the
    smallest :math:`\\eta` (Adam on a fixed learning rate does not decrease it monotonically).
    The computation is float64 (scoped, not global). Memory grows with ``B`` (all copies and
    their residuals live at once): pass large test sets in chunks.

    Args:
      model: a trained model :func:`refinable` accepts (left unchanged).
      x: input slices ``(B, X, Y, T_in)`` at the resolution to refine on.
      out_steps: number of predicted slices.
      nu, forcing, dt: the PDE (:func:`~nopx.datagen.navier_stokes_residual.nse_residual`);
        ``dt`` is the time between slices.
      modes: the enlarged layer's modes (:func:`output_cut`; the reference uses ``(64, 64,
        6)`` for an SFNO at 256²); ``None``: :func:`default_modes`.
      iterations: Adam steps.
      lr_weight, lr_bias: the two learning rates.
      alpha: :math:`\\alpha` of the :math:`H^{-1}` norm.
      time_derivative: ``"spectral"`` (SFNO) or ``"fd"`` (module docstring).
      delta: bias scale of an enlarged SFNO layer (the reference refines with 1; ``None``
        keeps the model's).
      target: optional ground truth ``(B, X, Y, out_steps)`` for the relative errors.
      normalizers: the run's ``(x, y)`` normalisers when the model works in normalised
        units (``encode``/``decode``; scalar, so ``∂_t`` of the decoded output is ``std``
        times that of the model's); ``None``: physical units.
      anchor: measure the residual of the trajectory that starts at the last input slice
        (known exactly; it must lie ``dt`` before the first output), with ``"fd"``. Without
        it the residual cannot see the error of the first predicted slice: an exact NSE
        solution from a wrong start has :math:`\\eta = 0`.
      gain: Xavier gain of the new modes.
      seed: random seed of the new modes.

    Returns:
      A :class:`RefineResult`.

    Raises:
      ValueError: an unknown or unusable ``time_derivative`` (``"solver"``: the residual
        would vanish identically; ``"spectral"`` for a model without a temporal series), or
        a model :func:`refinable` refuses.
    """
    if time_derivative not in ("spectral", "fd"):
        raise ValueError(f"time_derivative {time_derivative!r} cannot drive refinement: choose "
                         "'spectral' or 'fd' ('solver' makes the residual vanish for every "
                         "field; see the nopx.datagen.navier_stokes_residual docstring)")
    if anchor and time_derivative != "fd":
        raise ValueError("anchor=True measures the residual by finite differences from the "
                         "last input slice: use time_derivative='fd'")
    if time_derivative == "spectral" and not isinstance(model, SFNO):
        raise ValueError(f"time_derivative 'spectral' needs a temporal series at the output "
                         f"(an sfno); a {type(model).__name__} predicts slices only: use 'fd'")
    x = np.asarray(x)
    modes = default_modes(model, x.shape[1:3], out_steps) if modes is None else tuple(modes)
    cut = output_cut(model, modes, out_steps=out_steps, delta=delta, gain=gain, seed=seed)
    graphdef, state = nnx.split(cut.model)
    x_norm, y_norm = normalizers if normalizers is not None else (None, None)
    with jax.enable_x64(True):
        model64 = nnx.merge(graphdef, _as_float64(state))
        x64 = jnp.asarray(x, jnp.float64)
        x_in = x64 if x_norm is None else (x64 - float(x_norm.mean[0])) / float(x_norm.std[0])
        grid = x64.shape[1:3]
        f64 = jnp.zeros(grid) if forcing is None else jnp.asarray(forcing, jnp.float64)
        f64 = jnp.broadcast_to(f64, (x64.shape[0], *grid))           # one forcing per trajectory
        features = nnx.jit(cut.features)(model64, x_in)
        layer = cut.layer

        def in_layer(path: tuple, value: Any) -> bool:
            return isinstance(value, nnx.Param) and tuple(path[:len(layer)]) == layer

        model_def, layer_params, frozen = nnx.split(model64, in_layer, ...)
        batch = x64.shape[0]
        stacked = jax.tree.map(lambda p: jnp.broadcast_to(p, (batch, *p.shape)), layer_params)
        optimizer = optax.multi_transform(
            {"weight": optax.adam(lr_weight), "bias": optax.adam(lr_bias)}, _labels(layer_params))
        scale, shift = ((1.0, 0.0) if y_norm is None
                        else (float(y_norm.std[0]), float(y_norm.mean[0])))

        def one(params: nnx.State, frozen: nnx.State, z: jax.Array, x_model: jax.Array,
                x_b: jax.Array, f_b: jax.Array):
            w, w_t = cut.head(nnx.merge(model_def, params, frozen), z[None], x_model[None])
            w = scale * w + shift
            derivative = scale * w_t / dt if time_derivative == "spectral" else "fd"
            measured = jnp.concatenate([x_b[None, ..., -1:], w], -1) if anchor else w
            r = nse_residual(measured, nu=nu, forcing=f_b, dt=dt, time_derivative=derivative)
            return h_minus1(r, alpha)[0], w[0]

        # Everything but the refined layer enters as arguments, not closure constants: XLA
        # would constant-fold the frozen part on the cached features while compiling (seconds
        # to minutes on CPU).
        def etas(params: nnx.State, data: tuple):
            eta, w = jax.vmap(one, in_axes=(0, None, 0, 0, 0, 0))(params, *data)
            return jnp.sum(eta), (eta, w)

        @jax.jit
        def run(params: nnx.State, data: tuple):
            def step(carry, _):
                params, opt_state, best = carry
                grads, (eta, w) = jax.grad(etas, has_aux=True)(params, data)
                best = _select(eta < best[0], (eta, params, w), best)
                updates, opt_state = optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state, best), eta

            _, (eta0, initial) = etas(params, data)
            (params, _, best), history = jax.lax.scan(
                step, (params, optimizer.init(params), (eta0, params, initial)), None,
                length=iterations)
            _, (eta, w) = etas(params, data)
            best = _select(eta < best[0], (eta, params, w), best)
            history = jnp.concatenate([history, eta[None]])
            return history, initial, best[1], best[2]

        history, initial, params, refined = run(stacked, (frozen, features, x_in, x64, f64))
        history = np.asarray(history)
        before = after = None
        if target is not None:
            target64 = jnp.asarray(target, jnp.float64)
            before, after = (np.asarray(jax.jit(relative_l2)(w, target64))
                             for w in (initial, refined))
        return RefineResult(prediction=np.asarray(refined), initial_prediction=np.asarray(initial),
                            residual_history=history, best_iteration=np.argmin(history, axis=0),
                            rel_l2_before=before, rel_l2_after=after,
                            output_params=jax.tree.map(np.asarray, _at(params, layer)))
