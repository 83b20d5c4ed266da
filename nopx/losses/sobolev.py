r"""Spectral Sobolev :math:`H^s` norms on periodic grids, any real ``s``.

For ``u`` on the periodic box :math:`\Omega = [0, L_1) \times \dots \times [0, L_d)`
sampled on ``n_1 × … × n_d`` points,

.. math::
    \lVert u\rVert_{H^s}^2 = |\Omega| \sum_{k} \big(1 + |\xi_k|^2\big)^s\, |\hat u_k|^2,
    \qquad \xi_k = \Big(\frac{2\pi k_1}{L_1}, \dots, \frac{2\pi k_d}{L_d}\Big),

with :math:`\hat u = \mathrm{fft}(u) / N` (``norm="forward"``, :math:`N = \prod n_j`) over
all integer frequencies of the grid. By Parseval, ``s = 0`` gives exactly the :math:`L^2`
norm :math:`\sqrt{\int_\Omega u^2\,dx}` by the (spectrally exact) rectangle rule, ``s = 1``
is :math:`\sqrt{\lVert u\rVert^2 + \lVert\nabla u\rVert^2}` for band-limited ``u``, and
``s < 0`` gives the dual norms (``s = -1``: :math:`\lVert (1 - \Delta)^{-1/2} u\rVert`).
A real field's spectrum is computed with ``rfftn``, interior bins of the last axis counted
twice. Channels: a sample's norm takes all its channels together
(:math:`\lVert u\rVert^2 = \sum_c \lVert u_c\rVert^2`); the relative error is taken per
channel, like :func:`~nopx.losses.relative_lp`.

Example: :math:`u = \sin(2\pi x)\cos(4\pi y)` on :math:`[0,1]^2` has four modes
:math:`(\pm1, \pm2)` of weight 1/4 each, so :math:`\lVert u\rVert_{H^s}^2 = \tfrac14
(1 + 4\pi^2\cdot 5)^s`:

>>> import jax.numpy as jnp, math
>>> x = jnp.arange(16) / 16
>>> u = (jnp.sin(2 * jnp.pi * x)[:, None] * jnp.cos(4 * jnp.pi * x)[None, :])[None, ..., None]
>>> [round(float(sobolev_norm(u, s)), 4) for s in (0, 1)]
[0.5, 7.0426]
>>> round(math.sqrt(0.25 * (1 + 20 * math.pi ** 2)), 4)
7.0426

Options (keywords, defaults keep the definition above):

* ``alpha``: the weight is :math:`(\alpha + |\xi_k|^2)^s` (torch-cfd's :math:`H^s_\alpha`;
  Spectral-Refiner's residual norm uses :math:`\alpha = 10^{-3/2}`). With ``alpha=0`` and
  ``s < 0`` the mean (k = 0) is left out: the homogeneous dual seminorm.
* ``spacetime=True``: ``u`` is a trajectory ``(B, *spatial, T)``, time on the channel axis.
  The norm is the Bochner norm :math:`\big(\sum_t \lVert u(t)\rVert_{H^s}^2\big)^{1/2}` per
  sample (``time_average=True``: the mean over ``t`` instead of the sum), and the relative
  error divides the error's Bochner norm by the target's (not per slice).
* ``torchcfd_compat=True`` (with ``spacetime=True``): the numbers torch-cfd's ``SobolevLoss``
  prints (MODELS.md §7.3), quirks included: the weight on :math:`|\hat u_k|^2` is
  :math:`(\alpha + |\xi_k|^2)^{s/2}` for ``s ≠ 0`` and :math:`(\alpha + |\xi_k|^2)` for
  ``s = 0`` (its "L2" is an :math:`H^1_\alpha`-type norm); the result is divided by
  :math:`\sqrt T` (its default ``time_average=True``), the relative error too; the absolute
  norm is the plain :math:`\ell^2` norm of the unnormalised FFT coefficients (no
  :math:`|\Omega|`, no :math:`1/N`). Its default is ``alpha=0.1``: pass it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nopx.losses.domain import domain_lengths, spatial_axes
from nopx.losses.lp import EPS


def _symbol(xi_sq: np.ndarray, s: float, alpha: float, torchcfd_compat: bool) -> np.ndarray:
    """The weight on ``|û_k|²`` (module docstring); 0 where ``alpha + |ξ|² = 0`` and ``s < 0``."""
    if alpha < 0:
        raise ValueError(f"alpha must be non-negative, got {alpha!r}")
    exponent = (s / 2 if s != 0 else 1.0) if torchcfd_compat else s
    base = alpha + xi_sq
    with np.errstate(divide="ignore"):
        return np.where(base > 0, base ** exponent, 0.0 if exponent < 0 else base ** exponent)


def _sobolev_sq(u: jax.Array, s: float, domain: float | Sequence[float], alpha: float = 1.0,
                torchcfd_compat: bool = False) -> jax.Array:
    """Per (sample, channel) squared :math:`H^s` norm, shape ``(B, C)``."""
    axes = spatial_axes(u)
    shape = [u.shape[axis] for axis in axes]
    lengths = domain_lengths(domain, len(axes))
    coeffs = jnp.fft.rfftn(u, axes=axes, norm="forward")
    # |xi|^2 on the rfft grid (numpy: static, exact in float64), times the bin multiplicity.
    freqs = [np.fft.fftfreq(n, 1.0 / n) for n in shape[:-1]]
    freqs.append(np.fft.rfftfreq(shape[-1], 1.0 / shape[-1]))
    xi_sq = sum(np.meshgrid(*[(2 * np.pi * f / length) ** 2 for f, length in zip(freqs, lengths)],
                            indexing="ij"))
    last = freqs[-1]
    multiplicity = np.where((last == 0) | (2 * last == shape[-1]), 1.0, 2.0)
    # torch-cfd's unnormalised coefficients are N·û (N grid points), with no cell volume.
    scale = math.prod(shape) ** 2 if torchcfd_compat else math.prod(lengths)
    weight = scale * multiplicity * _symbol(xi_sq, s, alpha, torchcfd_compat)
    power = jnp.real(coeffs) ** 2 + jnp.imag(coeffs) ** 2
    return jnp.sum(power * jnp.asarray(weight[..., None], power.dtype), axis=axes)


def _check_spacetime(spacetime: bool, time_average: bool, torchcfd_compat: bool) -> None:
    if (time_average or torchcfd_compat) and not spacetime:
        raise ValueError("time_average and torchcfd_compat apply to trajectories: pass "
                         "spacetime=True (time on the last axis, (B, *spatial, T))")


def sobolev_norm(u: jax.Array, s: float, *, domain: float | Sequence[float] = 1.0,
                 alpha: float = 1.0, spacetime: bool = False, time_average: bool = False,
                 torchcfd_compat: bool = False) -> jax.Array:
    """Batch mean of the per-sample :math:`H^s` norm of ``u`` (module docstring).

    Args:
      u: real ``(B, *spatial, C)`` on a periodic grid, or a trajectory ``(B, *spatial, T)``
        with ``spacetime=True``.
      s: Sobolev exponent, any real number.
      domain: side length of the domain, scalar or one per spatial axis.
      alpha: the weight is ``(alpha + |ξ|²)^s``.
      spacetime: Bochner norm over the time slices on the last axis.
      time_average: with ``spacetime``, average the squared norm over the slices.
      torchcfd_compat: torch-cfd's ``SobolevLoss`` value (module docstring).

    Returns:
      A scalar.

    >>> import jax.numpy as jnp
    >>> w = jnp.ones((1, 8, 8, 4))                        # 4 slices of the constant 1
    >>> [round(float(sobolev_norm(w, 0.0, spacetime=True, time_average=t)), 6)
    ...  for t in (False, True)]
    [2.0, 1.0]
    """
    _check_spacetime(spacetime, time_average, torchcfd_compat)
    squares = _sobolev_sq(u, s, domain, alpha, torchcfd_compat)
    if time_average or torchcfd_compat:
        return jnp.mean(jnp.sqrt(jnp.mean(squares, axis=-1)))
    return jnp.mean(jnp.sqrt(jnp.sum(squares, axis=-1)))


def relative_sobolev(pred: jax.Array, target: jax.Array, s: float, *,
                     domain: float | Sequence[float] = 1.0, alpha: float = 1.0,
                     spacetime: bool = False, torchcfd_compat: bool = False) -> jax.Array:
    """Mean over batch and channels of ``‖pred - target‖_{H^s} / (‖target‖_{H^s} + 1e-8)``.

    With ``spacetime=True`` (trajectories ``(B, *spatial, T)``) the ratio is of the Bochner
    norms per sample, then the batch mean; ``torchcfd_compat`` divides it by ``sqrt(T)`` and
    uses torch-cfd's weight (module docstring). ``alpha`` as in :func:`sobolev_norm`.

    >>> import jax.numpy as jnp
    >>> y = jnp.cos(2 * jnp.pi * jnp.arange(8) / 8).reshape(1, 8, 1)
    >>> round(float(relative_sobolev(1.5 * y, y, s=-1)), 6)
    0.5
    """
    _check_spacetime(spacetime, False, torchcfd_compat)
    err = _sobolev_sq(pred - target, s, domain, alpha, torchcfd_compat)
    ref = _sobolev_sq(target, s, domain, alpha, torchcfd_compat)
    if not spacetime:
        return jnp.mean(jnp.sqrt(err) / (jnp.sqrt(ref) + EPS))
    ratio = jnp.sqrt(jnp.sum(err, axis=-1)) / (jnp.sqrt(jnp.sum(ref, axis=-1)) + EPS)
    if torchcfd_compat:
        ratio = ratio / math.sqrt(target.shape[-1])
    return jnp.mean(ratio)
