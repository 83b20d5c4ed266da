"""A user-defined operator and loss, found by name from a config's ``imports:``.

``GatedFNO`` is an FNO variant with a different mixing layer: each block adds the spectral
convolution and a pointwise linear path, then multiplies by a learned sigmoid gate of the
block's input (a "gated" Fourier layer) instead of applying an activation. It is built only
from ``nopx.layers``, and registered as ``gated_fno``; ``relative_l1`` is a registered loss.

>>> import jax.numpy as jnp
>>> model = GatedFNO(in_channels=1, out_channels=1, n_modes=(6, 6), hidden_channels=8)
>>> model(jnp.ones((2, 16, 16, 1))).shape
(2, 16, 16, 1)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from nopx.layers import ChannelMLP, SpectralConv, append_grid
from nopx.losses import register_loss
from nopx.models import register


class GatedBlock(nnx.Module):
    """``x ↦ σ(W_g x) ⊙ (K x + W x)`` with ``K`` a spectral convolution: ``(B, *n, C) -> (B, *n, C)``."""

    def __init__(self, channels: int, n_modes: Sequence[int], *, rngs: nnx.Rngs) -> None:
        self.spectral = SpectralConv(channels, channels, n_modes, rngs=rngs)
        self.linear = nnx.Linear(channels, channels, rngs=rngs)
        self.gate = nnx.Linear(channels, channels, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(self.gate(x)) * (self.spectral(x) + self.linear(x))


@register("gated_fno")
class GatedFNO(nnx.Module):
    """Grid in, grid out: lift, ``n_layers`` gated blocks, project.

    Args:
      in_channels, out_channels: field channels (nopx sets them from the data).
      n_modes: Fourier modes kept per axis, as for ``fno``.
      hidden_channels: block width.
      n_layers: number of gated blocks.
      rngs: random streams for the initialisation.
    """

    def __init__(self, in_channels: int, out_channels: int, n_modes: Sequence[int],
                 hidden_channels: int = 16, n_layers: int = 3, *,
                 rngs: nnx.Rngs | None = None) -> None:
        rngs = nnx.Rngs(0) if rngs is None else rngs
        self.lift = ChannelMLP(in_channels + len(n_modes), hidden_channels, hidden_channels,
                               rngs=rngs)
        self.blocks = nnx.List([GatedBlock(hidden_channels, n_modes, rngs=rngs)
                                for _ in range(n_layers)])
        self.project = ChannelMLP(hidden_channels, out_channels, 2 * hidden_channels, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.lift(append_grid(x))
        for block in self.blocks:
            x = block(x)
        return self.project(x)


@register_loss("relative_l1")
def relative_l1():
    """``‖pred - target‖₁ / ‖target‖₁`` per sample and channel, averaged."""
    def loss(pred: jax.Array, target: jax.Array) -> jax.Array:
        axes = tuple(range(1, pred.ndim - 1))
        error = jnp.sum(jnp.abs(pred - target), axis=axes)
        return jnp.mean(error / (jnp.sum(jnp.abs(target), axis=axes) + 1e-8))

    return loss
