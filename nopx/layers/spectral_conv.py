r"""The n-d spectral convolution of the Fourier Neural Operator.

.. math::
    (\mathcal{K}x)_o = \mathcal{F}^{-1}\Big[\textstyle\sum_i W_{k,i,o}\,\hat x_{k,i}\Big] + b_o,
    \qquad k \in \text{kept modes},

with :math:`\hat x = \mathcal{F}x` the real FFT over the spatial axes (neuraloperator's
``norm="forward"`` by default) and every other frequency set to zero. The weight :math:`W`
is stored dense or factorized (CP, Tucker, TT: :mod:`nopx.layers.factorized`), per layer or
as one slice of a tensor shared by a stack of layers.

Factorized weights: rebuild, or contract the factors with the kept modes? ``"auto"`` picks
the form with fewer multiply-adds (:func:`~nopx.layers.factorized.contraction_flops`): the
rebuild costs ``O(K·C_in·C_out·R)`` once per call, the direct contraction ``O(B·K·(C_in·R_in
+ R_in·R_out + R_out·C_out))`` against the dense ``O(B·K·C_in·C_out)``, so direct wins for
small batches and small channel ranks. Measured (XLA:CPU, 2 shared and contended cores,
2026-11-30; fwd+bwd of the mode mixing alone, 32 channels, 16×16 modes, ms, rebuilt /
direct): batch 8: Tucker 0.1 (channel ranks 18) 5.4 / 2.6, Tucker 0.02 (ranks 11) 6.0 / 2.6,
CP 0.01 (R 17) 5.5 / 1.6; batch 32: Tucker 0.1 9.6 / 9.9 (the count predicts a near tie),
Tucker 0.02 15.2 / 5.8, CP 0.01 16.8 / 9.8. In a whole layer (batch 8, 64² grid) the FFTs
dominate: Tucker 0.1 13.5 / 15.2 ms, Tucker 0.01 11.2 / 9.7 ms — differences within the
noise of this machine. CP of rank 0.1 (R = 166 > 32 channels) and TT always rebuild.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from nopx.layers.checks import check_choice, check_n_modes, check_positive
from nopx.layers.factorized import (FACTORIZATIONS, Factorization, FactorizedTensor, Rank,
                                    contract, contraction_flops, reconstruct)
from nopx.layers.fourier import (Method, Norm, check_options, kept_shape, truncated_irfftn,
                                 truncated_rfftn)

Implementation = Literal["auto", "reconstructed", "factorized"]
IMPLEMENTATIONS = ("auto", "reconstructed", "factorized")


def default_std(in_channels: int, out_channels: int) -> float:
    """Standard deviation of a spectral weight's complex entries, ``sqrt(2/(C_in + C_out))``."""
    return math.sqrt(2.0 / (in_channels + out_channels))


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
    with the first ``d-1`` mode axes centred. With ``factorization`` other than ``"dense"``
    the complex weight ``(*kept, C_in, C_out)`` is a
    :class:`~nopx.layers.factorized.FactorizedTensor` ``weight`` instead; given a ``weight``
    of shape ``(L, *kept, C_in, C_out)`` (a joint factorization shared by ``L`` layers) the
    layer uses its slice ``layer``.

    Args:
      in_channels, out_channels: channel counts.
      n_modes: kept modes per spatial axis.
      bias: add a learned per-channel bias.
      fft_norm: ``"forward"`` (default, resolution-independent coefficients), ``"backward"``
        or ``"ortho"``.
      transform: ``"auto"``, ``"fft"`` or ``"dft"`` (see :mod:`nopx.layers.fourier`).
      init_std: standard deviation of the complex weights; ``None`` for the default above.
      factorization: ``"dense"``, ``"cp"``, ``"tucker"`` or ``"tt"``.
      rank: fraction of the dense parameter count kept by a factorization, or explicit ranks
        (:mod:`nopx.layers.factorized`).
      implementation: ``"reconstructed"`` (rebuild the dense weight), ``"factorized"``
        (contract the input with the CP/Tucker factors) or ``"auto"`` (fewer multiply-adds).
      weight: a shared joint ``FactorizedTensor`` ``(L, *kept, C_in, C_out)``; replaces
        ``factorization`` and ``rank``.
      layer: this layer's index into ``weight``.
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
    >>> tucker = SpectralConv(3, 5, (8, 8), factorization="tucker", rank=0.5, rngs=nnx.Rngs(0))
    >>> tucker.weight.factorization, tucker.weight.shape
    ('tucker', (8, 5, 3, 5))
    """

    def __init__(self, in_channels: int, out_channels: int, n_modes: Sequence[int], *,
                 bias: bool = True, fft_norm: Norm = "forward", transform: Method = "auto",
                 init_std: float | None = None, param_dtype: jnp.dtype = jnp.float32,
                 factorization: Factorization = "dense", rank: Rank = 1.0,
                 implementation: Implementation = "auto", weight: FactorizedTensor | None = None,
                 layer: int | None = None, rngs: nnx.Rngs) -> None:
        check_positive(in_channels=in_channels, out_channels=out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n_modes = check_n_modes(n_modes)
        check_options(fft_norm, transform)
        self.fft_norm = fft_norm
        self.transform = transform
        std = default_std(in_channels, out_channels) if init_std is None else init_std
        shape = (*kept_shape(self.n_modes), in_channels, out_channels)
        check_choice("factorization", factorization, FACTORIZATIONS)
        check_choice("implementation", implementation, IMPLEMENTATIONS)
        self.implementation = implementation
        self.layer = layer
        if weight is not None:
            if weight.shape[1:] != shape or layer is None or not 0 <= layer < weight.shape[0]:
                raise ValueError(f"a shared spectral weight must be (L, *{shape}) with 0 <= "
                                 f"layer < L; got {weight.shape} and layer={layer!r}")
            self.weight = weight
        elif factorization != "dense":
            self.weight = FactorizedTensor(shape, factorization, rank, std=std,
                                           param_dtype=param_dtype, rngs=rngs)
        else:
            self.weight = nnx.data(None)
            part_std = std / math.sqrt(2.0)              # re and im share the variance
            self.weight_real = nnx.Param(part_std * jax.random.normal(rngs.params(), shape,
                                                                      param_dtype))
            self.weight_imag = nnx.Param(part_std * jax.random.normal(rngs.params(), shape,
                                                                      param_dtype))
        if implementation == "factorized" and self.weight is not None \
                and self.weight.factorization == "tt":
            raise ValueError("implementation='factorized' contracts CP or Tucker factors; "
                             "a TT weight is always reconstructed")
        self.bias = (nnx.Param(std * jax.random.normal(rngs.params(), (out_channels,), param_dtype))
                     if bias else nnx.data(None))

    def __call__(self, x: jax.Array, output_shape: Sequence[int] | None = None) -> jax.Array:
        """``(*batch, n_1..n_d, C_in)`` real → ``(*batch, *(output_shape or n), C_out)``."""
        d = len(self.n_modes)
        if x.ndim < d + 2 or x.shape[-1] != self.in_channels:
            raise ValueError(f"SpectralConv expects (batch, {d} spatial axes, "
                             f"{self.in_channels} channels); got shape {x.shape}")
        coeffs = truncated_rfftn(x, self.n_modes, norm=self.fft_norm, method=self.transform)
        mixed = self._mix(coeffs.reshape(-1, *coeffs.shape[-d - 1:]))
        mixed = mixed.reshape(*coeffs.shape[:-1], self.out_channels)
        grid = x.shape[-d - 1:-1] if output_shape is None else tuple(output_shape)
        y = truncated_irfftn(mixed, grid, norm=self.fft_norm, method=self.transform)
        return y if self.bias is None else y + self.bias[...]

    def _mix(self, coeffs: jax.Array) -> jax.Array:
        """``(B, *kept, C_in) -> (B, *kept, C_out)``: the product with the (factorized) weight."""
        if self.weight is None:
            weight = jax.lax.complex(self.weight_real[...], self.weight_imag[...])
        else:
            kind = self.weight.factorization
            factors = self.weight.factors(self.layer)
            if self._contract_directly(kind, factors, coeffs):
                return contract(kind, factors, coeffs)
            weight = reconstruct(kind, factors)
        # Modes as the batch dimension of one matmul: (M, B, C_in) @ (M, C_in, C_out).
        kept = math.prod(coeffs.shape[1:-1])
        mixed = jnp.einsum("bki,kio->bko", coeffs.reshape(-1, kept, self.in_channels),
                           weight.reshape(-1, self.in_channels, self.out_channels))
        return mixed.reshape(*coeffs.shape[:-1], self.out_channels)

    def _contract_directly(self, kind: str, factors: Sequence[jax.Array],
                           coeffs: jax.Array) -> bool:
        if self.implementation != "auto":
            return self.implementation == "factorized"
        rebuilt, direct = contraction_flops(kind, [f.shape for f in factors], coeffs.shape[0],
                                            math.prod(coeffs.shape[1:-1]))
        return direct < rebuilt
