"""Pointwise non-linearities, looked up by the names used in model configs.

``"gelu"`` is the exact GELU, :math:`x\\,\\Phi(x) = \\tfrac{x}{2}(1 + \\mathrm{erf}(x/\\sqrt2))`,
as in neuraloperator (PyTorch's ``F.gelu``). It is written with ``erf`` and a hand-written
derivative because ``jax.nn.gelu(approximate=False)`` goes through ``erfc``, whose XLA:CPU
kernel and autodiff made one FNO train step ~20% slower. ``"gelu_tanh"`` is the tanh
approximation (``jax.nn.gelu``'s default), about as fast as the exact one here but not what
neuraloperator trains with.

>>> import jax.numpy as jnp
>>> act = get_activation("gelu")
>>> [round(float(v), 4) for v in act(jnp.array([-1.0, 0.0, 1.0]))]
[-0.1587, 0.0, 0.8413]
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from nopx.layers.checks import check_choice

Activation = Callable[[jax.Array], jax.Array]

_INV_SQRT2 = float(np.sqrt(0.5))
_INV_SQRT_2PI = float(1.0 / np.sqrt(2.0 * np.pi))


@jax.custom_jvp
def gelu(x: jax.Array) -> jax.Array:
    """Exact GELU ``x * Phi(x)``, with ``Phi`` the standard normal CDF."""
    return x * (0.5 + 0.5 * jax.lax.erf(x * _INV_SQRT2))


@gelu.defjvp
def _gelu_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]) -> tuple[jax.Array, jax.Array]:
    # d/dx [x Phi(x)] = Phi(x) + x phi(x); sharing Phi between value and slope keeps one erf.
    (x,), (dx,) = primals, tangents
    cdf = 0.5 + 0.5 * jax.lax.erf(x * _INV_SQRT2)
    return x * cdf, dx * (cdf + x * _INV_SQRT_2PI * jnp.exp(-0.5 * x * x))


ACTIVATIONS: dict[str, Activation] = {
    "gelu": gelu,
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
}


def get_activation(name: str) -> Activation:
    """The activation called ``name`` (one of :data:`ACTIVATIONS`); ``ValueError`` otherwise."""
    check_choice("non_linearity", name, sorted(ACTIVATIONS))
    return ACTIVATIONS[name]
