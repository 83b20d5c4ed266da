"""Building blocks for neural operators (flax.nnx), one idea per module.

Every layer takes channels-last arrays ``(B, *spatial, C)`` — measured faster than
channels-first inside an FNO on XLA:CPU, where the 1×1 convolutions dominate — so a model
needs no transposes at all.

* :mod:`~nopx.layers.fourier`: truncated real FFTs (FFTs axis by axis, or DFT matrix products);
* :class:`SpectralConv`: the n-d spectral convolution, its weight dense or factorized;
* :class:`FactorizedTensor` (:mod:`~nopx.layers.factorized`): CP, Tucker and TT complex
  tensors for factorized spectral weights, per layer or shared by a stack;
* :class:`SpaceTimeSpectralConv`: the space-time spectral convolution of the SFNO (output
  time length resampled through the inverse FFT, spectral bias, temporal zero padding);
* :class:`ChannelMLP`, :func:`channel_linear`: pointwise (1×1) layers;
* :class:`SoftGating`, :func:`make_skip`: skip connections;
* :func:`append_grid`: positional grid embedding;
* :func:`pad_domain`, :func:`unpad_domain`: domain padding;
* :func:`make_norm`: instance / group normalisation;
* :class:`FNOBlock`: one FNO layer;
* :func:`apply_in_chunks` (:mod:`~nopx.layers.batch_chunks`): a per-sample model on a batch
  as independent chunks, which XLA:CPU overlaps;
* :class:`WindowAttention`, :func:`window_and_shift` (:mod:`~nopx.layers.window_attention`):
  SwinV2 windowed scaled-cosine attention with a continuous relative position bias;
* :class:`ConditionalLayerNorm`: a layer norm whose scale and shift are functions of the
  lead time ``t`` (scOT's time conditioning);
* :func:`get_activation`, :func:`gelu`: activations by name.
"""

from nopx._malloc import tune_jax

tune_jax()  # before JAX's CPU backend starts (nopx/_malloc.py)

from nopx.layers.activations import ACTIVATIONS, gelu, get_activation
from nopx.layers.batch_chunks import apply_in_chunks
from nopx.layers.channel_mlp import ChannelMLP, channel_linear
from nopx.layers.conditional_norm import ConditionalLayerNorm
from nopx.layers.embedding import append_grid, grid_coordinates
from nopx.layers.factorized import FactorizedTensor
from nopx.layers.fno_block import FNOBlock
from nopx.layers.fourier import kept_shape, truncated_irfftn, truncated_rfftn
from nopx.layers.normalization import make_norm
from nopx.layers.padding import domain_pads, pad_domain, unpad_domain
from nopx.layers.skip import SoftGating, make_skip
from nopx.layers.spectral_conv import SpectralConv
from nopx.layers.spectral_conv_st import SpaceTimeSpectralConv
from nopx.layers.window_attention import WindowAttention, window_and_shift

__all__ = [
    "ACTIVATIONS",
    "ChannelMLP",
    "ConditionalLayerNorm",
    "FNOBlock",
    "FactorizedTensor",
    "SoftGating",
    "SpaceTimeSpectralConv",
    "SpectralConv",
    "WindowAttention",
    "append_grid",
    "apply_in_chunks",
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
    "window_and_shift",
]
