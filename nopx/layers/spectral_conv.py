r"""The n-d spectral convolution of the Fourier Neural Operator.

.. math::
    (\mathcal{K}x)_o = \mathcal{F}^{-1}\Big[\textstyle\sum_i W_{k,i,o}\,\hat x_{k,i}\Big] + b_o,
    \qquad k \in \text{kept modes},

with :math:`\hat x = \mathcal{F}x` the real FFT over the spatial axes (neuraloperator's
``norm="forward"`` by default) and every other frequency set to zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from nopx.layers.checks import check_n_modes, check_positive
from nopx.layers.fourier import (Method, Norm, check_options, kept_shape, truncated_irfftn,
                                 truncated_rfftn)


class SpectralConv(nnx.Module):
    """Spectral convolution over ``d = len(n_modes)`` spatial axes, channels-last.

    ``x (B, n_1, ..., n_d, C_in) -> (B, N_1, ..., N_d, C_out)`` with ``N = n`` unless
    ``output_shape`` is given. Steps: truncated real FFT (:mod:`nopx.layers.fourier`, axis
    by axis, never the full spectrum) → one batched complex product over the channels with
    the modes as batch dimension → truncated inverse FFT onto the output grid → bias.

    Modes follow neuraloperator 2.x: ``n_modes[k]`` counts all kept frequencies on axis
    ``k`` (``-m/2 .. m/2-1`` for even ``m``) and ``n_modes[-1]//2 + 1`` bins of the real
    FFT axis are kept. The original FNO's per-sign ``modes`` maps to ``n_modes = 2·modes``
    (one extra bin on the last axis). A grid needs ``n_k >= m_k`` points per axis.

    Parameters: ``weight_real``/``weight_imag`` of shape ``(*kept, C_in, C_out)`` with
    ``kept = (m_1, ..., m_{d-1}, m_d//2 + 1)`` — a real/imag pair because optax treats a
    complex parameter's (conjugate) gradient as if it were real and climbs. Both start as
    ``N(0, std²/2)`` so the complex weight has standard deviation ``std =
    sqrt(2/(C_in + C_out))``; the optional ``bias (C_out,)`` is ``std·N(0, 1)``.
    neuraloperator stores the same numbers as one complex ``(C_in, C_out, *kept)`` tensor,
    with the first ``d-1`` mode axes centred.

    Args:
      in_channels, out_channels: channel counts.
      n_modes: kept modes per spatial axis.
      bias: add a learned per-channel bias.
      fft_norm: ``"forward"`` (default, resolution-independent coefficients), ``"backward"``
        or ``"ortho"``.
      transform: ``"auto"``, ``"fft"`` or ``"dft"`` (see :mod:`nopx.layers.fourier`).
      init_std: standard deviation of the complex weights; ``None`` for the default above.
      param_dtype: float dtype of the parameters.
      rngs: random streams for the initialisation.

    >>> import jax.numpy as jnp
    >>> conv = SpectralConv(3, 5, (8, 8), rngs=nnx.Rngs(0))
    >>> conv.weight_real.shape
    (8, 5, 3, 5)
    >>> conv(jnp.ones((2, 32, 32, 3))).shape
    (2, 32, 32, 5)
    >>> conv(jnp.ones((2, 32, 32, 3)), output_shape=(64, 48)).shape
    (2, 64, 48, 5)
    """

    def __init__(self, in_channels: int, out_channels: int, n_modes: Sequence[int], *,
                 bias: bool = True, fft_norm: Norm = "forward", transform: Method = "auto",
                 init_std: float | None = None, param_dtype: jnp.dtype = jnp.float32,
                 rngs: nnx.Rngs) -> None:
        check_positive(in_channels=in_channels, out_channels=out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n_modes = check_n_modes(n_modes)
        check_options(fft_norm, transform)
        self.fft_norm = fft_norm
        self.transform = transform
        std = math.sqrt(2.0 / (in_channels + out_channels)) if init_std is None else init_std
        shape = (*kept_shape(self.n_modes), in_channels, out_channels)
        part_std = std / math.sqrt(2.0)                  # re and im share the variance
        self.weight_real = nnx.Param(part_std * jax.random.normal(rngs.params(), shape,
                                                                  param_dtype))
        self.weight_imag = nnx.Param(part_std * jax.random.normal(rngs.params(), shape,
                                                                  param_dtype))
        self.bias = (nnx.Param(std * jax.random.normal(rngs.params(), (out_channels,), param_dtype))
                     if bias else nnx.data(None))

    def __call__(self, x: jax.Array, output_shape: Sequence[int] | None = None) -> jax.Array:
        """``(*batch, n_1..n_d, C_in)`` real → ``(*batch, *(output_shape or n), C_out)``."""
        d = len(self.n_modes)
        if x.ndim < d + 2 or x.shape[-1] != self.in_channels:
            raise ValueError(f"SpectralConv expects (batch, {d} spatial axes, "
                             f"{self.in_channels} channels); got shape {x.shape}")
        coeffs = truncated_rfftn(x, self.n_modes, norm=self.fft_norm, method=self.transform)
        weight = jax.lax.complex(self.weight_real[...], self.weight_imag[...])
        kept_axes = coeffs.shape[-d - 1:-1]
        # Modes as the batch dimension of one matmul: (M, B, C_in) @ (M, C_in, C_out).
        flat = coeffs.reshape(-1, math.prod(kept_axes), self.in_channels)
        mixed = jnp.einsum("bki,kio->bko", flat,
                           weight.reshape(-1, self.in_channels, self.out_channels))
        mixed = mixed.reshape(*coeffs.shape[:-1], self.out_channels)
        grid = x.shape[-d - 1:-1] if output_shape is None else tuple(output_shape)
        y = truncated_irfftn(mixed, grid, norm=self.fft_norm, method=self.transform)
        return y if self.bias is None else y + self.bias[...]
