r"""Truncated real Fourier transforms over the spatial axes of channels-last arrays.

A spectral layer only needs a few low frequencies, so the transforms here never build the
full spectrum. Two methods, chosen for the whole transform:

* ``"fft"``: axis by axis, the real FFT on the last spatial axis first (keeping ``m//2 + 1``
  bins), then one complex FFT per remaining axis on the coefficients kept so far, each
  followed by a slice of the kept bins (inverse: zero-pad to full length, inverse FFT).
* ``"dft"``: products with truncated DFT matrices (``kept × n``), in real arithmetic on a
  trailing real/imaginary axis, axis by axis from the *outermost* spatial axis in, each step
  one batched matrix product ``(P, J, F) -> (P, Z, F)`` over the leading axes ``P`` with the
  trailing axes ``F`` contiguous: no transposed copy of the data is ever made. Channels-last
  transforms on an inner axis otherwise make XLA:CPU transpose the whole array around the
  product; on the 3-D space-time FNO of ``bench/train_step.py`` (config d, one layer's round
  trip, forward and backward) this form took 41 ms down to 15 ms. For the few modes of a
  neural operator the matrix products beat an FFT plus slicing on XLA:CPU (a round trip
  over a (16, 64, 64, 32) batch with 16 modes ran about 2-3x faster fwd+bwd on 2 cores), and
  matrix products are what accelerators do best.
* ``"auto"``: ``"dft"`` when every axis keeps few bins compared to its length, ``"fft"``
  otherwise (see :func:`axis_method`).

Kept frequencies, in storage order. On every spatial axis but the last, ``m`` modes:
:math:`k = 0, 1, \dots, p-1, -q, \dots, -1` with :math:`q = \lfloor m/2 \rfloor`,
:math:`p = m - q` (for even ``m``: ``-m/2 .. m/2-1``). On the last axis :math:`k = 0 ..
\lfloor m/2 \rfloor`. These are neuraloperator 2.x's modes (it stores them centred, after an
``fftshift``: a permutation of ours); the original FNO's ``modes`` counts one sign, so its
``modes=12`` ≈ ``n_modes=24`` here, with one extra bin on the last axis.

Normalisation ``norm`` as in :func:`jax.numpy.fft.fftn`: ``"forward"`` (neuraloperator's
default: the forward transform divides by the number of points, so coefficients do not
depend on the grid size), ``"backward"`` or ``"ortho"``.

>>> import jax.numpy as jnp
>>> x = jnp.cos(2 * jnp.pi * jnp.arange(8) / 8)[None, :, None]      # (B=1, n=8, C=1)
>>> c = truncated_rfftn(x, (4,))                                      # bins k = 0, 1, 2
>>> [round(float(v), 6) for v in c[0, :, 0].real]
[0.0, 0.5, 0.0]
>>> bool(jnp.allclose(truncated_irfftn(c, (8,)), x, atol=1e-6))
True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from nopx.layers.checks import check_choice

Method = Literal["auto", "fft", "dft"]
Norm = Literal["forward", "backward", "ortho"]
METHODS = ("auto", "fft", "dft")
NORMS = ("forward", "backward", "ortho")


def kept_shape(n_modes: Sequence[int]) -> tuple[int, ...]:
    """Number of stored coefficients per spatial axis: ``m`` on each axis, ``m//2+1`` on the last.

    >>> kept_shape((16, 16))
    (16, 9)
    """
    return (*n_modes[:-1], n_modes[-1] // 2 + 1)


def full_axis_frequencies(m: int) -> np.ndarray:
    """Integer frequencies kept on a complex axis, in storage order ``0..p-1, -q..-1``.

    >>> full_axis_frequencies(5).tolist()
    [0, 1, 2, -2, -1]
    """
    q = m // 2
    return np.concatenate([np.arange(m - q), np.arange(-q, 0)])


def axis_method(n: int, kept: int, method: Method) -> Literal["fft", "dft"]:
    """Resolve ``"auto"``: a DFT matrix product while ``kept`` is small next to ``n``.

    The DFT costs ``O(n·kept)`` per line against the FFT's ``O(n log n)`` plus a copy of the
    whole axis. On XLA:CPU (2 cores, fwd+bwd) the matrix product won up to about
    ``kept ≈ 8·log2(n)``: about 3x faster at 16 modes (64², 128², 1024 points), 1.6x at 33
    of 1024 bins, 1.4x slower at 129 of 1024.
    """
    if method != "auto":
        return method
    return "dft" if kept <= 8 * max(math.log2(n), 1.0) else "fft"


def transform_method(spatial_shape: Sequence[int], n_modes: Sequence[int],
                     method: Method) -> Literal["fft", "dft"]:
    """The method of a whole transform: ``"dft"`` only where :func:`axis_method` picks it on
    every axis (the products are chained over all axes).

    >>> transform_method((64, 64), (16, 16), "auto"), transform_method((64, 1024), (16, 600), "auto")
    ('dft', 'fft')
    """
    kept = kept_shape(n_modes)
    picks = {axis_method(n, k, method) for n, k in zip(spatial_shape, kept)}
    return "dft" if picks == {"dft"} else "fft"


def check_modes(spatial_shape: Sequence[int], n_modes: Sequence[int], what: str) -> None:
    """Raise ``ValueError`` unless a grid of ``spatial_shape`` can hold ``n_modes``."""
    if len(spatial_shape) != len(n_modes):
        raise ValueError(f"{what} has {len(spatial_shape)} spatial axes {tuple(spatial_shape)} "
                         f"but n_modes {tuple(n_modes)} has {len(n_modes)}")
    for axis, (n, m) in enumerate(zip(spatial_shape, n_modes)):
        last = axis == len(n_modes) - 1
        if (n // 2 < m // 2) if last else (n < m):
            raise ValueError(f"{what}: spatial axis {axis} has {n} points, too few for "
                             f"n_modes[{axis}] = {m} (need at least {m})")


def _scale(n: int, norm: Norm, inverse: bool) -> float:
    if norm == "ortho":
        return 1.0 / math.sqrt(n)
    return 1.0 / n if (norm == "forward") != inverse else 1.0


def _bins(m: int, last: bool) -> np.ndarray:
    return np.arange(m // 2 + 1) if last else full_axis_frequencies(m)


@functools.lru_cache(maxsize=256)
def _forward_matrix(n: int, m: int, last: bool, norm: Norm, real_input: bool) -> np.ndarray:
    r"""Truncated forward DFT of one axis in real arithmetic, float64, shaped ``(2·kept, J)``.

    Rows are ``(bin, re/im)`` pairs. Columns: the ``n`` points of a real input, or the
    ``(re/im, point)`` pairs (``2n``) of a complex one, :math:`(A + iB)(\cos θ - i\sin θ)
    = (A\cos θ + B\sin θ) + i(B\cos θ - A\sin θ)` with :math:`θ = 2πkj/n`.
    """
    phase = 2.0 * np.pi * np.outer(_bins(m, last), np.arange(n)) / n          # (kept, n)
    cos, sin = np.cos(phase), np.sin(phase)
    if real_input:
        rows = np.stack([cos, -sin], axis=1)                                   # (kept, 2, n)
    else:
        rows = np.stack([np.concatenate([cos, sin], 1), np.concatenate([-sin, cos], 1)], axis=1)
    return rows.reshape(-1, rows.shape[-1]) * _scale(n, norm, False)


@functools.lru_cache(maxsize=256)
def _inverse_matrix(n: int, m: int, last: bool, norm: Norm, real_output: bool) -> np.ndarray:
    r"""Truncated inverse DFT of one axis in real arithmetic, float64, shaped ``(Z, 2·kept)``.

    Columns are ``(bin, re/im)`` pairs; rows the ``n`` output points (``real_output``: the
    real part only) or ``(re/im, point)`` pairs (``2n``), :math:`(A + iB)(\cos θ + i\sin θ)
    = (A\cos θ - B\sin θ) + i(A\sin θ + B\cos θ)`. On the last (half-spectrum) axis each
    bin standing for a ± pair counts twice, bin 0 and Nyquist once, as ``irfft`` does; taking
    the real part on whichever axis comes last gives the same field, since it is linear.
    """
    bins = _bins(m, last)
    phase = 2.0 * np.pi * np.outer(np.arange(n), bins) / n                    # (n, kept)
    weight = np.where((bins == 0) | (2 * bins == n), 1.0, 2.0) if last else 1.0
    cos, sin = weight * np.cos(phase), weight * np.sin(phase)
    real = np.stack([cos, -sin], axis=2).reshape(n, -1)
    rows = real if real_output else np.concatenate([real, np.stack([sin, cos], 2).reshape(n, -1)])
    return rows * _scale(n, norm, True)


def _matrix(key: tuple) -> np.ndarray:
    """The matrix a :func:`_batched_product` key names: ``(inverse, n, m, last, norm, real)``."""
    inverse, *args = key
    return (_inverse_matrix if inverse else _forward_matrix)(*args)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _batched_product(key: tuple, y: jax.Array) -> jax.Array:
    """``(P, J, F) -> (P, Z, F)``: the matrix ``(Z, J)`` named by ``key`` times each of the
    ``P`` slices of ``y``, at full precision.

    The matrix is broadcast over ``P`` so that XLA sees batch dimensions on both sides and
    keeps ``y``'s layout (a shared matrix would make ``P`` a free dimension and the whole of
    ``y`` would be transposed around the product). The gradient is the same product with
    the transposed matrix, written out so that it takes the same fast path (autodiff's
    transposed batched product ran on a slower kernel, about 2 ms per call at 16×64×2048).
    """
    return _apply(_matrix(key), y)


def _apply(mat: np.ndarray, y: jax.Array) -> jax.Array:
    mat = jnp.asarray(mat, y.dtype)
    return jnp.einsum("pzj,pjf->pzf", jnp.broadcast_to(mat, (y.shape[0], *mat.shape)), y,
                      precision=jax.lax.Precision.HIGHEST)


def _batched_product_fwd(key: tuple, y: jax.Array) -> tuple[jax.Array, None]:
    return _batched_product(key, y), None


def _batched_product_bwd(key: tuple, _: None, grad: jax.Array) -> tuple[jax.Array]:
    return (_apply(np.ascontiguousarray(_matrix(key).T), grad),)


_batched_product.defvjp(_batched_product_fwd, _batched_product_bwd)


def _dft_rfftn(x: jax.Array, n_modes: Sequence[int], norm: Norm) -> jax.Array:
    """:func:`truncated_rfftn` by DFT products, outermost axis first (module docstring)."""
    d = len(n_modes)
    spatial, channels = x.shape[-d - 1:-1], x.shape[-1]
    y = x.reshape(-1, spatial[0], math.prod(spatial[1:]) * channels)
    for axis, (n, m) in enumerate(zip(spatial, n_modes)):
        last = axis == d - 1
        y = _batched_product((False, n, m, last, norm, axis == 0), y)   # (P, kept·2, trailing)
        if not last:   # next: the (re/im, point) pairs of the next axis
            y = y.reshape(-1, 2 * spatial[axis + 1], y.shape[-1] // spatial[axis + 1])
    y = y.reshape(*x.shape[:-d - 1], *kept_shape(n_modes), 2, channels)
    return jax.lax.complex(y[..., 0, :], y[..., 1, :])


def _dft_irfftn(coeffs: jax.Array, shape: Sequence[int], n_modes: Sequence[int],
                norm: Norm) -> jax.Array:
    """:func:`truncated_irfftn` by DFT products, innermost axis first (module docstring)."""
    d = len(shape)
    kept, channels = coeffs.shape[-d - 1:-1], coeffs.shape[-1]
    y = jnp.stack([coeffs.real, coeffs.imag], axis=-2)       # (..., kept_d, 2, C)
    y = y.reshape(-1, 2 * kept[-1], channels)
    for axis in reversed(range(d)):
        key = (True, shape[axis], n_modes[axis], axis == d - 1, norm, axis == 0)
        y = _batched_product(key, y)                          # (P, [2·]n, trailing)
        if axis:   # next: the (bin, re/im) pairs of the axis before
            y = y.reshape(-1, 2 * kept[axis - 1], y.shape[-2] * y.shape[-1] // 2)
    return y.reshape(*coeffs.shape[:-d - 1], *shape, channels)


def _take(x: jax.Array, start: int, stop: int, axis: int) -> jax.Array:
    return jax.lax.slice_in_dim(x, start, stop, axis=axis)


def _forward_axis(x: jax.Array, axis: int, m: int, last: bool, norm: Norm) -> jax.Array:
    n = x.shape[axis]
    if last:
        return _take(jnp.fft.rfft(x, axis=axis, norm=norm), 0, m // 2 + 1, axis)
    y = jnp.fft.fft(x, axis=axis, norm=norm)
    q = m // 2
    return jnp.concatenate([_take(y, 0, m - q, axis), _take(y, n - q, n, axis)], axis=axis)


def _zeros_like_axis(x: jax.Array, axis: int, size: int) -> jax.Array:
    shape = list(x.shape)
    shape[axis] = size
    return jnp.zeros(shape, x.dtype)


def _inverse_axis(c: jax.Array, axis: int, n: int, m: int, last: bool, norm: Norm) -> jax.Array:
    kept = c.shape[axis]
    if last:
        # irfft needs a Hermitian spectrum: bin 0 and (when kept) the Nyquist bin are real.
        def real_bin(i: int) -> jax.Array:
            return _take(c, i, i + 1, axis).real.astype(c.dtype)

        nyquist = n % 2 == 0 and kept == n // 2 + 1
        parts = [real_bin(0), _take(c, 1, kept - nyquist, axis)]
        parts.append(real_bin(kept - 1) if nyquist
                     else _zeros_like_axis(c, axis, n // 2 + 1 - kept))
        return jnp.fft.irfft(jnp.concatenate(parts, axis=axis), n=n, axis=axis, norm=norm)
    q = m // 2
    padded = jnp.concatenate([_take(c, 0, m - q, axis), _zeros_like_axis(c, axis, n - m),
                              _take(c, m - q, m, axis)], axis=axis)
    return jnp.fft.ifft(padded, axis=axis, norm=norm)


def check_options(norm: str, method: str) -> None:
    """Raise ``ValueError`` for an unknown ``norm`` or ``method``."""
    check_choice("fft_norm", norm, NORMS)
    check_choice("transform", method, METHODS)


def truncated_rfftn(x: jax.Array, n_modes: Sequence[int], *, norm: Norm = "forward",
                    method: Method = "auto") -> jax.Array:
    """Low-frequency real FFT coefficients over the ``d = len(n_modes)`` spatial axes.

    Args:
      x: real ``(*batch, n_1, ..., n_d, C)``; the spatial axes sit just before the channels.
      n_modes: modes kept per spatial axis (module docstring for the convention).
      norm: FFT normalisation.
      method: ``"auto"``, ``"fft"`` or ``"dft"`` (:func:`transform_method`).

    Returns:
      complex ``(*batch, m_1, ..., m_{d-1}, m_d//2 + 1, C)``, equal to
      ``rfftn(x, axes=spatial, norm=norm)`` at the kept frequencies.
    """
    check_options(norm, method)
    d = len(n_modes)
    spatial = x.shape[-d - 1:-1]
    check_modes(spatial, n_modes, f"input of shape {x.shape}")
    if transform_method(spatial, n_modes, method) == "dft":
        return _dft_rfftn(x, n_modes, norm)
    axes = range(x.ndim - d - 1, x.ndim - 1)
    # The real-to-complex step first: every later axis then only sees the kept bins.
    out = _forward_axis(x, axes[-1], n_modes[-1], True, norm)
    for axis, m in zip(axes[:-1], n_modes[:-1]):
        out = _forward_axis(out, axis, m, False, norm)
    return out


def truncated_irfftn(coeffs: jax.Array, shape: Sequence[int], *, norm: Norm = "forward",
                     method: Method = "auto") -> jax.Array:
    """Real field on a grid of ``shape`` from the kept coefficients (the rest taken as zero).

    Args:
      coeffs: complex ``(*batch, m_1, ..., m_{d-1}, m_d//2 + 1, C)`` as returned by
        :func:`truncated_rfftn` (``m_d`` is recovered as ``2·(kept_d - 1)``).
      shape: output spatial shape ``(N_1, ..., N_d)``; it may differ from the input grid
        (with ``norm="forward"`` this evaluates the same trigonometric polynomial on it).
      norm, method: as in :func:`truncated_rfftn`.

    Returns:
      real ``(*batch, N_1, ..., N_d, C)``, equal to ``irfftn`` of the zero-padded spectrum,
      after making bin 0 (and Nyquist) of the last axis real as ``irfft`` requires.
    """
    check_options(norm, method)
    d = len(shape)
    axes = range(coeffs.ndim - d - 1, coeffs.ndim - 1)
    n_modes = (*coeffs.shape[axes[0]:axes[-1]], 2 * (coeffs.shape[axes[-1]] - 1))
    check_modes(shape, n_modes, f"output grid {tuple(shape)}")
    if transform_method(shape, n_modes, method) == "dft":
        return _dft_irfftn(coeffs, shape, n_modes, norm)
    out = coeffs
    for axis, n, m in zip(axes[:-1], shape[:-1], n_modes[:-1]):
        out = _inverse_axis(out, axis, n, m, False, norm)
    return _inverse_axis(out, axes[-1], shape[-1], n_modes[-1], True, norm)
