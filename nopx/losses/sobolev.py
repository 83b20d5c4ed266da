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
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nopx.losses.domain import domain_lengths, spatial_axes
from nopx.losses.lp import EPS


def _sobolev_sq(u: jax.Array, s: float, domain: float | Sequence[float]) -> jax.Array:
    """Per (sample, channel) squared :math:`H^s` norm, shape ``(B, C)``."""
    axes = spatial_axes(u)
    shape = [u.shape[axis] for axis in axes]
    lengths = domain_lengths(domain, len(axes))
    coeffs = jnp.fft.rfftn(u, axes=axes, norm="forward")
    # |xi|^2 on the rfft grid (numpy: static, exact in float64), times the bin multiplicity.
    freqs = [np.fft.fftfreq(n, 1.0 / n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1], 1.0 / shape[-1])]
    xi_sq = sum(np.meshgrid(*[(2 * np.pi * f / length) ** 2 for f, length in zip(freqs, lengths)],
                            indexing="ij"))
    last = freqs[-1]
    multiplicity = np.where((last == 0) | (2 * last == shape[-1]), 1.0, 2.0)
    weight = math.prod(lengths) * multiplicity * (1.0 + xi_sq) ** s
    power = jnp.real(coeffs) ** 2 + jnp.imag(coeffs) ** 2
    return jnp.sum(power * jnp.asarray(weight[..., None], power.dtype), axis=axes)


def sobolev_norm(u: jax.Array, s: float, *, domain: float | Sequence[float] = 1.0) -> jax.Array:
    """Batch mean of the per-sample :math:`H^s` norm of ``u`` (module docstring).

    Args:
      u: real ``(B, *spatial, C)`` on a periodic grid.
      s: Sobolev exponent, any real number.
      domain: side length of the domain, scalar or one per spatial axis.

    Returns:
      A scalar.
    """
    return jnp.mean(jnp.sqrt(jnp.sum(_sobolev_sq(u, s, domain), axis=-1)))


def relative_sobolev(pred: jax.Array, target: jax.Array, s: float, *,
                     domain: float | Sequence[float] = 1.0) -> jax.Array:
    """Mean over batch and channels of ``‖pred - target‖_{H^s} / (‖target‖_{H^s} + 1e-8)``.

    >>> import jax.numpy as jnp
    >>> y = jnp.cos(2 * jnp.pi * jnp.arange(8) / 8).reshape(1, 8, 1)
    >>> round(float(relative_sobolev(1.5 * y, y, s=-1)), 6)
    0.5
    """
    err = jnp.sqrt(_sobolev_sq(pred - target, s, domain))
    return jnp.mean(err / (jnp.sqrt(_sobolev_sq(target, s, domain)) + EPS))
