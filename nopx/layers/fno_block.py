r"""One FNO layer (neuraloperator's post-activation ``FNOBlocks`` layer), channels-last.

.. math::
    h &= \mathrm{norm}(\mathcal{K}x) + S_{\mathrm{fno}}x, \qquad h \leftarrow \sigma(h)
        \ \text{unless last}\\
    y &= \mathrm{norm}\big(\mathrm{MLP}(h) + S_{\mathrm{mlp}}x\big), \qquad y \leftarrow
        \sigma(y)\ \text{unless last}

with :math:`\mathcal{K}` a :class:`~nopx.layers.SpectralConv`, :math:`S` the skips of
:mod:`nopx.layers.skip` (both read the block *input*) and MLP the channel MLP
``C → round(expansion·C) → C``. ``channel_mlp_expansion=None`` leaves the MLP (and its skip)
out: ``y = h``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from nopx.layers.activations import get_activation
from nopx.layers.channel_mlp import ChannelMLP
from nopx.layers.factorized import Factorization, FactorizedTensor, Rank
from nopx.layers.fourier import Method, Norm
from nopx.layers.normalization import make_norm
from nopx.layers.skip import make_skip
from nopx.layers.spectral_conv import Implementation, SpectralConv


class FNOBlock(nnx.Module):
    """``(B, *spatial, C_in) -> (B, *spatial, C_out)``; see the module docstring.

    Args:
      in_channels, out_channels: channel counts.
      n_modes: kept Fourier modes per spatial axis (:class:`~nopx.layers.SpectralConv`).
      activate_output: apply the non-linearity at the end (all layers but the last).
      non_linearity: activation name (:mod:`nopx.layers.activations`).
      channel_mlp_expansion: hidden width of the channel MLP as a fraction of ``C_out``;
        ``None`` for no channel MLP.
      channel_mlp_skip, fno_skip: skip kinds (:mod:`nopx.layers.skip`).
      norm: ``None``, ``"instance_norm"`` or ``"group_norm"``, applied after the spectral
        convolution and after the channel MLP.
      fft_norm, transform: passed to :class:`~nopx.layers.SpectralConv`.
      factorization, rank, implementation, weight, layer: the spectral weight, dense,
        factorized, or slice ``layer`` of a ``weight`` shared by a stack of blocks (passed to
        :class:`~nopx.layers.SpectralConv`).
      rngs: random streams.

    >>> import jax.numpy as jnp
    >>> block = FNOBlock(8, 8, (4, 4), rngs=nnx.Rngs(0))
    >>> block(jnp.ones((2, 16, 16, 8))).shape
    (2, 16, 16, 8)
    """

    def __init__(self, in_channels: int, out_channels: int, n_modes: Sequence[int], *,
                 activate_output: bool = True, non_linearity: str = "gelu",
                 channel_mlp_expansion: float | None = 0.5,
                 channel_mlp_skip: str | None = "soft-gating", fno_skip: str | None = "linear",
                 norm: str | None = None, fft_norm: Norm = "forward", transform: Method = "auto",
                 factorization: Factorization = "dense", rank: Rank = 1.0,
                 implementation: Implementation = "auto", weight: FactorizedTensor | None = None,
                 layer: int | None = None, rngs: nnx.Rngs) -> None:
        self.activation = get_activation(non_linearity)
        self.activate_output = activate_output
        self.conv = SpectralConv(in_channels, out_channels, n_modes, fft_norm=fft_norm,
                                 transform=transform, factorization=factorization, rank=rank,
                                 implementation=implementation, weight=weight, layer=layer,
                                 rngs=rngs)
        self.fno_skip = make_skip(fno_skip, in_channels, out_channels, rngs=rngs,
                                  name="fno_skip")
        self.conv_norm = make_norm(norm, out_channels, rngs=rngs)
        if channel_mlp_expansion is None:
            self.channel_mlp = self.channel_mlp_skip = self.mlp_norm = nnx.data(None)
            return
        if channel_mlp_expansion <= 0:
            raise ValueError(f"channel_mlp_expansion must be positive or None, "
                             f"got {channel_mlp_expansion!r}")
        hidden = max(1, round(channel_mlp_expansion * out_channels))
        self.channel_mlp = ChannelMLP(out_channels, out_channels, hidden,
                                      non_linearity=non_linearity, rngs=rngs)
        self.channel_mlp_skip = make_skip(channel_mlp_skip, in_channels, out_channels,
                                          rngs=rngs, name="channel_mlp_skip")
        self.mlp_norm = make_norm(norm, out_channels, rngs=rngs)

    def _maybe_activate(self, x: jax.Array) -> jax.Array:
        return self.activation(x) if self.activate_output else x

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, *spatial, C_in) -> (B, *spatial, C_out)``."""
        h = self.conv(x)
        if self.conv_norm is not None:
            h = self.conv_norm(h)
        if self.fno_skip is not None:
            h = h + self.fno_skip(x)
        h = self._maybe_activate(h)
        if self.channel_mlp is None:
            return h
        y = self.channel_mlp(h)
        if self.channel_mlp_skip is not None:
            y = y + self.channel_mlp_skip(x)
        if self.mlp_norm is not None:
            y = self.mlp_norm(y)
        return self._maybe_activate(y)
