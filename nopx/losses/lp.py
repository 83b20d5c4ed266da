r"""Relative :math:`L^p` error, as neuraloperator's ``LpLoss`` (relative form).

.. math::
    \mathrm{relative\_lp}(\hat y, y) = \frac{1}{BC}\sum_{b,c}
        \frac{\lVert \hat y_{bc} - y_{bc}\rVert_p}{\lVert y_{bc}\rVert_p + \varepsilon},
    \qquad \lVert v\rVert_p = \Big(\sum_{\text{grid}} |v|^p\Big)^{1/p},\ \varepsilon = 10^{-8}

per sample ``b`` and channel ``c`` over the spatial axes (quadrature weights cancel in the
ratio), then the mean over batch and channels. neuraloperator *sums* over the batch: its
loss is ``B·C`` times this one.

>>> import jax.numpy as jnp
>>> y = jnp.array([3.0, 4.0]).reshape(1, 2, 1)        # (B, n, C): ||y||_2 = 5
>>> round(float(relative_lp(y + jnp.array([0.0, 1.0]).reshape(1, 2, 1), y)), 6)
0.2
>>> round(float(relative_lp(jnp.zeros_like(y), y, p=1)), 6)
1.0
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nopx.losses.domain import spatial_axes

EPS = 1e-8


def _lp_norm(x: jax.Array, p: float, axes: tuple[int, ...]) -> jax.Array:
    if p == 2:
        return jnp.sqrt(jnp.sum(x * x, axis=axes))
    return jnp.sum(jnp.abs(x) ** p, axis=axes) ** (1.0 / p)


def relative_lp(pred: jax.Array, target: jax.Array, p: float = 2) -> jax.Array:
    """Mean over batch and channels of ``‖pred - target‖_p / (‖target‖_p + 1e-8)``.

    Args:
      pred, target: ``(B, *spatial, C)``.
      p: exponent of the norm, ``p >= 1``.

    Returns:
      A scalar.
    """
    axes = spatial_axes(target)
    return jnp.mean(_lp_norm(pred - target, p, axes) / (_lp_norm(target, p, axes) + EPS))
