"""Losses and norms as small pure functions of channels-last ``(B, *spatial, C)`` arrays.

Each reduces over the spatial axes and averages over the batch (and over channels where the
quantity is per channel; see each function).

* :func:`relative_lp`: relative :math:`L^p` (neuraloperator ``LpLoss``);
* :func:`h1`: relative :math:`H^1` by periodic finite differences (neuraloperator ``H1Loss``);
* :func:`sobolev_norm`, :func:`relative_sobolev`: spectral :math:`H^s`, any real ``s``.

Training losses are found by name (``loss: {name: ...}``) through :func:`register_loss`.
"""

from nopx._malloc import tune_jax

tune_jax()  # before JAX's CPU backend starts (nopx/_malloc.py)

from nopx.losses.h1 import h1
from nopx.losses.lp import relative_lp
from nopx.losses.registry import available_losses, build_loss, get_loss, register_loss
from nopx.losses.sobolev import relative_sobolev, sobolev_norm

__all__ = ["available_losses", "build_loss", "get_loss", "h1", "register_loss", "relative_lp",
           "relative_sobolev", "sobolev_norm"]
