r"""The space-time spectral convolution of the SFNO (Spectral-Refiner), with time resampling.

.. math::
    (\mathcal{K}v)(x, t) = \mathcal{F}^{-1}_{T'}\Big[\textstyle\sum_i W_{k,i,o}\,\hat v_{k,i}
        + \delta\, b_{k,o}\Big], \qquad k = (k_1, \dots, k_d, k_t) \in \text{kept modes},

with :math:`\hat v` the real FFT over the spatial axes *and* time (the real-to-complex axis is
time), and :math:`\mathcal{F}^{-1}_{T'}` the inverse transform onto ``T'`` time steps: the
kept temporal frequencies are a trigonometric series in ``t`` that the inverse evaluates on
any number of steps, so a layer maps ``T`` input slices to any ``T'`` output slices (the
SFNO's latent and output lengths). The optional spectral bias :math:`b` (a learned
coefficient per kept mode, scaled by ``delta``) acts like a source term.

Modes follow torch-cfd's ``SpectralConvT`` (MODELS.md §4.1), *not* the total-count
convention of :class:`~nopx.layers.SpectralConv`: ``n_modes = (m_1, ..., m_d, m_t)`` keeps
spatial frequencies :math:`-m_j \le k_j < m_j` (``2 m_j`` per axis, torch-cfd's four
corner blocks in 2-D) and the ``m_t`` lowest temporal bins :math:`0 \le k_t < m_t`. This is
:class:`~nopx.layers.SpectralConv`'s ``n_modes = (2m_1, ..., 2m_d, 2(m_t - 1))`` on the
space-time grid, and exactly what :mod:`nopx.layers.fourier` computes here.

Temporal zero padding (``temporal_padding=True``, the SFNO output layer): ``T`` zeros are
prepended before the FFT and the inverse is taken on ``T' + T`` steps, of which the last
``T'`` are kept. The series then has a period of twice the input window, which keeps the
wrap-around of a non-periodic trajectory away from the kept slices.

Normalisation: torch-cfd's ``fft_norm="backward"`` is the default. Weights then act the same
at every spatial resolution, but the spectral bias is a raw coefficient: its contribution
in physical space scales like ``1 / (n_1 ⋯ n_d · T')`` (it is what Spectral-Refiner's
bias learning rate of 0.2 is tuned for). ``fft_norm="forward"`` makes the bias resolution-
independent too.

>>> import jax.numpy as jnp
>>> conv = SpaceTimeSpectralConv(3, 2, (4, 4, 3), rngs=nnx.Rngs(0))
>>> conv.weight_real.shape                     # (2·4, 2·4, 3, C_in, C_out)
(8, 8, 3, 3, 2)
>>> conv(jnp.ones((1, 16, 16, 10, 3)), out_steps=25).shape
(1, 16, 16, 25, 2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nopx.layers.checks import check_n_modes, check_positive
from nopx.layers.fourier import Method, Norm, check_options, truncated_irfftn, truncated_rfftn


def stored_modes(n_modes: Sequence[int]) -> tuple[int, ...]:
    """Stored coefficients per axis: ``2 m`` on each spatial axis, ``m_t`` on time.

    >>> stored_modes((12, 12, 5))
    (24, 24, 5)
    """
    return (*(2 * m for m in n_modes[:-1]), n_modes[-1])


def uniform_init(scale: float) -> nnx.Initializer:
    """torch-cfd's spectral weight initialisation, ``scale · U[0, 1)`` for re and im alike."""
    def init(key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        return scale * jax.random.uniform(key, shape, dtype)

    return init


class SpaceTimeSpectralConv(nnx.Module):
    """Spectral convolution over ``d`` spatial axes and time, channels-last.

    ``v (B, n_1, ..., n_d, T, C_in) -> (B, n_1, ..., n_d, T', C_out)``; see the module
    docstring. ``T'`` is the call's ``out_steps``, else the constructor's, else ``T``.

    Parameters: ``weight_real``/``weight_imag`` of shape ``(2m_1, ..., 2m_d, m_t, C_in,
    C_out)`` (storage order per spatial axis ``0, ..., m-1, -m, ..., -1``, i.e. torch-cfd's
    corner blocks side by side), and with ``bias=True`` ``bias_real``/``bias_imag`` of shape
    ``(2m_1, ..., 2m_d, m_t, C_out)`` (torch-cfd shares one bias over the output channels; it
    only uses one). A real/imag pair because optax climbs on complex parameters. Weights start
    as torch-cfd's ``0.5/(C_in·C_out) · U[0, 1)``, biases at zero.

    When a grid has fewer temporal bins than ``m_t`` (short inputs or outputs), the bins it
    has are used, like torch-cfd's slicing. Spatial axes need ``n_j >= 2 m_j`` points.

    Args:
      in_channels, out_channels: channel counts.
      n_modes: ``(m_1, ..., m_d, m_t)``: spatial modes per sign, then temporal bins.
      out_steps: default number of output time steps (``None``: as many as the input).
      bias: learn the spectral bias.
      delta: scale of the spectral bias.
      temporal_padding: prepend ``T`` zeros in time before the transform (module docstring).
      fft_norm: ``"backward"`` (torch-cfd, default), ``"forward"`` or ``"ortho"``.
      transform: ``"auto"``, ``"fft"`` or ``"dft"`` (see :mod:`nopx.layers.fourier`).
      init_scale: scale of the uniform weight initialisation (``None``: ``0.5/(C_in·C_out)``).
      param_dtype: float dtype of the parameters.
      rngs: random streams for the initialisation.
    """

    def __init__(self, in_channels: int, out_channels: int, n_modes: Sequence[int], *,
                 out_steps: int | None = None, bias: bool = False, delta: float = 1.0,
                 temporal_padding: bool = False, fft_norm: Norm = "backward",
                 transform: Method = "auto", init_scale: float | None = None,
                 param_dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs) -> None:
        check_positive(in_channels=in_channels, out_channels=out_channels)
        if isinstance(n_modes, (int, str)) or not isinstance(n_modes, Sequence) \
                or len(n_modes) < 2:
            raise ValueError(f"n_modes lists the spatial modes per sign, then the temporal "
                             f"bins, e.g. (12, 12, 5); got {n_modes!r}")
        self.n_modes = check_n_modes(tuple(n_modes[:-1])) + check_n_modes(tuple(n_modes[-1:]))
        if out_steps is not None:
            check_positive(out_steps=out_steps)
        check_options(fft_norm, transform)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.out_steps = out_steps
        self.delta = float(delta)
        self.temporal_padding = bool(temporal_padding)
        self.fft_norm = fft_norm
        self.transform = transform
        scale = 0.5 / (in_channels * out_channels) if init_scale is None else init_scale
        shape = (*stored_modes(self.n_modes), in_channels, out_channels)
        init = uniform_init(scale)
        self.weight_real = nnx.Param(init(rngs.params(), shape, param_dtype))
        self.weight_imag = nnx.Param(init(rngs.params(), shape, param_dtype))
        if bias:
            bias_shape = (*stored_modes(self.n_modes), out_channels)
            self.bias_real = nnx.Param(jnp.zeros(bias_shape, param_dtype))
            self.bias_imag = nnx.Param(jnp.zeros(bias_shape, param_dtype))
        else:
            self.bias_real = self.bias_imag = nnx.data(None)

    def __call__(self, v: jax.Array, out_steps: int | None = None, *,
                 time_derivative: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
        """``(B, *spatial, T, C_in) -> (B, *spatial, T', C_out)``.

        With ``time_derivative=True`` returns ``(y, dy)``: ``dy`` is the exact derivative of
        the layer's temporal trigonometric series with respect to the output step index (the
        time between two output slices is the unit; divide by the physical step).
        """
        d = len(self.n_modes) - 1
        if v.ndim < d + 3 or v.shape[-1] != self.in_channels:
            raise ValueError(f"SpaceTimeSpectralConv expects (batch, {d} spatial axes, time, "
                             f"{self.in_channels} channels); got shape {v.shape}")
        steps = out_steps or self.out_steps or v.shape[-2]
        pad = v.shape[-2] if self.temporal_padding else 0
        if pad:
            v = jnp.pad(v, [(0, 0)] * (v.ndim - 2) + [(pad, 0), (0, 0)])
        spatial = v.shape[-d - 2:-2]
        length = steps + pad
        # Temporal bins that both the (padded) input and output grids hold.
        bins = min(self.n_modes[-1], v.shape[-2] // 2 + 1, length // 2 + 1)
        modes = (*stored_modes(self.n_modes)[:-1], 2 * (bins - 1))
        coeffs = truncated_rfftn(v, modes, norm=self.fft_norm, method=self.transform)
        weight = jax.lax.complex(self.weight_real[...], self.weight_imag[...])[..., :bins, :, :]
        kept = coeffs.shape[-d - 2:-1]
        # Modes as the batch dimension of one matmul: (B, K, C_in) x (K, C_in, C_out).
        flat = coeffs.reshape(-1, math.prod(kept), self.in_channels)
        mixed = jnp.einsum("bki,kio->bko", flat,
                           weight.reshape(-1, self.in_channels, self.out_channels))
        mixed = mixed.reshape(*coeffs.shape[:-1], self.out_channels)
        if self.bias_real is not None:
            bias = jax.lax.complex(self.bias_real[...], self.bias_imag[...])[..., :bins, :]
            mixed = mixed + self.delta * bias
        y = self._synthesize(mixed, spatial, length, pad)
        if not time_derivative:
            return y
        symbol = jnp.asarray(_derivative_symbol(bins, length), mixed.dtype)
        return y, self._synthesize(mixed * symbol, spatial, length, pad)

    def _synthesize(self, mixed: jax.Array, spatial: Sequence[int], length: int,
                    pad: int) -> jax.Array:
        y = truncated_irfftn(mixed, (*spatial, length), norm=self.fft_norm, method=self.transform)
        return y[..., pad:, :] if pad else y


def _derivative_symbol(bins: int, length: int) -> np.ndarray:
    """``(bins, 1)``: ``2πi k / length`` per temporal bin ``k``, zero at Nyquist.

    The Nyquist term of a real series is ``c cos(π j)``; its interpolant's slope vanishes on
    the grid, and ``irfft`` would otherwise keep ``Re(iπc) = -π Im(c)``.
    """
    k = np.arange(bins, dtype=np.float64)
    symbol = 2j * np.pi * k / length
    symbol[2 * k == length] = 0.0
    return symbol[:, None]
