"""Building blocks for neural operators (flax.nnx), one idea per module.

Every layer takes channels-last arrays ``(B, *spatial, C)`` — measured faster than
channels-first inside an FNO on XLA:CPU, where the 1×1 convolutions dominate — so a model
needs no transposes at all.

* :mod:`~nopx.layers.fourier`: truncated real FFTs (axis by axis, FFT or DFT matmul);
* :class:`SpectralConv`: the n-d spectral convolution;
* :class:`SpaceTimeSpectralConv`: the space-time spectral convolution of the SFNO (output
  time length resampled through the inverse FFT, spectral bias, temporal zero padding);
* :class:`ChannelMLP`, :func:`channel_linear`: pointwise (1×1) layers;
* :class:`SoftGating`, :func:`make_skip`: skip connections;
* :func:`append_grid`: positional grid embedding;
* :func:`pad_domain`, :func:`unpad_domain`: domain padding;
* :func:`make_norm`: instance / group normalisation;
* :class:`FNOBlock`: one FNO layer;
* :func:`get_activation`, :func:`gelu`: activations by name.
"""

from nopx.layers.activations import ACTIVATIONS, gelu, get_activation
from nopx.layers.channel_mlp import ChannelMLP, channel_linear
from nopx.layers.embedding import append_grid, grid_coordinates
from nopx.layers.fno_block import FNOBlock
from nopx.layers.fourier import kept_shape, truncated_irfftn, truncated_rfftn
from nopx.layers.normalization import make_norm
from nopx.layers.padding import domain_pads, pad_domain, unpad_domain
from nopx.layers.skip import SoftGating, make_skip
from nopx.layers.spectral_conv import SpectralConv
from nopx.layers.spectral_conv_st import SpaceTimeSpectralConv

__all__ = [
    "ACTIVATIONS",
    "ChannelMLP",
    "FNOBlock",
    "SoftGating",
    "SpaceTimeSpectralConv",
    "SpectralConv",
    "append_grid",
    "channel_linear",
    "domain_pads",
    "gelu",
    "get_activation",
    "grid_coordinates",
    "kept_shape",
    "make_norm",
    "make_skip",
    "pad_domain",
    "truncated_irfftn",
    "truncated_rfftn",
    "unpad_domain",
]
