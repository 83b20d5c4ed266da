"""Training losses by name, as models are: ``@register_loss("name")`` on a factory.

A factory takes the config's keyword arguments (``loss: {name: sobolev, s: -1}`` calls the
``sobolev`` factory with ``s=-1``) and returns ``loss(pred, target) -> scalar`` on
channels-last ``(B, *spatial, C)`` arrays in physical units.

>>> import jax.numpy as jnp
>>> sorted(available_losses())[:3]
['h1', 'relative_l2', 'sobolev']
>>> loss = build_loss("relative_l2")
>>> float(loss(jnp.ones((1, 4, 1)), 2 * jnp.ones((1, 4, 1))))
0.5
>>> @register_loss("mse_demo")
... def mse_demo():
...     return lambda pred, target: jnp.mean((pred - target) ** 2)
>>> float(build_loss("mse_demo")(jnp.ones((1, 4, 1)), jnp.zeros((1, 4, 1))))
1.0
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax

from nopx.losses.h1 import h1
from nopx.losses.lp import relative_lp
from nopx.losses.sobolev import relative_sobolev
from nopx.registry import Registry

Loss = Callable[[jax.Array, jax.Array], jax.Array]
LOSSES = Registry("loss")
register_loss = LOSSES.register
get_loss = LOSSES.get
build_loss = LOSSES.build
available_losses = LOSSES.available


@register_loss("relative_l2")
def _relative_l2(p: float = 2) -> Loss:
    """Relative L^p (default L^2) over the spatial axes, batch mean."""
    return functools.partial(relative_lp, p=p)


@register_loss("h1")
def _h1() -> Loss:
    """Relative H^1 by periodic finite differences."""
    return h1


@register_loss("sobolev")
def _sobolev(s: float = 1.0, domain: float = 1.0) -> Loss:
    """Relative spectral H^s, any real ``s`` (negative included), periodic ``domain``."""
    return functools.partial(relative_sobolev, s=s, domain=domain)
