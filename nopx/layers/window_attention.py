"""Swin-V2 attention inside (shifted) windows of a 2-D token grid.

The grid ``(B, H, W, C)`` is cut into non-overlapping windows of ``M_h × M_w`` tokens and
every window attends within itself (Liu et al., "Swin Transformer V2", CVPR 2022):

.. math::

    A = \\frac{q\\,k^\\top}{\\lVert q\\rVert\\,\\lVert k\\rVert}\\,
        e^{\\min(\\tau_h,\\ \\ln 100)} + 16\\,\\sigma\\big(\\mathrm{MLP}(\\hat\\Delta_{ij})\\big),
    \\qquad \\mathrm{out} = \\mathrm{softmax}(A)\\,v,

per head ``h``: *scaled cosine attention* with a learned logit scale ``τ_h`` (initially
``ln 10``), plus a *continuous relative position bias*: a 2 → 512 → heads MLP of the
log-spaced offset between two tokens of a window,
``Δ̂ = sign(Δ)·log2(1 + 8|Δ|/(M − 1)) / 3`` per axis (``M − 1`` taken as 1 for a window
of one token, where Swin-V2 divides by zero). The MLP, not a table, holds the parameters,
so the same weights serve every window size.

Shifted windows: the grid is first rolled by ``−shift`` along each axis, and tokens that
the roll brought together from different sides of the grid are kept apart by adding −100
to their scores (Swin-V2's mask, so converted checkpoints agree exactly); the result is
rolled back. A grid that is not a multiple of the window is zero-padded at its
end (the padding takes part in attention, as in Swin-V2 and Poseidon) and cropped again.
:func:`window_and_shift` shrinks the window to a grid smaller than it and then turns the
shift off, so stages coarser than one window attend globally.

The softmax attention itself is :func:`jax.nn.dot_product_attention` (the logit scale is
folded into ``q``, position bias and mask are passed to it as one bias, windows are its
batch), JAX's entry point for fused attention kernels; it picks its default implementation (XLA today).
Projections: ``q`` and ``v`` with bias, ``k`` without (Swin-V2), then an output
``Linear(C → C)``.

>>> import jax.numpy as jnp
>>> attention = WindowAttention(8, n_heads=2, rngs=nnx.Rngs(0))
>>> window, shift = window_and_shift((6, 16), 4)
>>> window, shift
((4, 4), (2, 2))
>>> attention(jnp.ones((1, 6, 16, 8)), window, shift).shape      # (B, H, W, C)
(1, 6, 16, 8)
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nopx.layers.checks import check_positive

_MAX_LOGIT_SCALE = math.log(100.0)
_CPB_HIDDEN = 512     # width of the relative-position MLP, as Swin-V2
_CPB_SPREAD = 8.0     # offsets scaled to [-8, 8] before the log map, as Swin-V2
_MASKED = -100.0      # the score added between tokens that may not attend, as Swin-V2

Pair = tuple[int, int]


def window_and_shift(grid: Pair, window_size: int, shifted: bool = True) -> tuple[Pair, Pair]:
    """The window and shift used on a ``grid = (H, W)`` of tokens.

    Per axis the window is ``min(window_size, n)``; the shift is ``window_size // 2`` on
    axes longer than the window (for a shifted block) and 0 otherwise.

    >>> window_and_shift((8, 32), 16)
    ((8, 16), (0, 8))
    """
    window = tuple(min(window_size, n) for n in grid)
    shift = tuple(window_size // 2 if shifted and n > window_size else 0 for n in grid)
    return window, shift


def _relative_coordinates(window: Pair) -> np.ndarray:
    """``(2M_h − 1, 2M_w − 1, 2)``: every offset between two tokens of a window, log-spaced."""
    axes = [np.arange(-(m - 1), m, dtype=np.float32) / max(m - 1, 1) * _CPB_SPREAD
            for m in window]
    table = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    return np.sign(table) * np.log2(1.0 + np.abs(table)) / np.log2(_CPB_SPREAD)


def _relative_index(window: Pair) -> np.ndarray:
    """``(T, T)`` with ``T = M_h M_w``: the flat index of the offset between tokens i and j."""
    rows, cols = np.meshgrid(np.arange(window[0]), np.arange(window[1]), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    d_row = rows[:, None] - rows[None, :] + window[0] - 1
    d_col = cols[:, None] - cols[None, :] + window[1] - 1
    return d_row * (2 * window[1] - 1) + d_col


def _shift_mask(padded: Pair, window: Pair, shift: Pair) -> np.ndarray:
    """``(n_windows, 1, T, T)`` bool: True where two tokens of a window may attend.

    After the roll, each axis has up to three regions (``[0, n − M)``, ``[n − M, n − s)``,
    ``[n − s, n)``) that were not neighbours before it; tokens attend within their region.
    """
    labels = []
    for n, m, s in zip(padded, window, shift):
        label = np.zeros(n, dtype=np.int32)
        if s:
            label[n - m:n - s], label[n - s:] = 1, 2
        labels.append(label)
    region = labels[0][:, None] * 3 + labels[1][None, :]
    windows = partition(region[None, :, :, None], window)[0, :, :, 0]   # (n_windows, T)
    return (windows[:, :, None] == windows[:, None, :])[:, None]


def partition(x: jax.Array, window: Pair) -> jax.Array:
    """``(B, H, W, C) -> (B, n_windows, M_h M_w, C)``, windows in row-major order.

    Also takes a NumPy array (the masks are built at trace time).
    """
    b, h, w, c = x.shape
    x = x.reshape(b, h // window[0], window[0], w // window[1], window[1], c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, -1, window[0] * window[1], c)


def merge(windows: jax.Array, window: Pair, grid: Pair) -> jax.Array:
    """The inverse of :func:`partition`: ``(B, n_windows, M_h M_w, C) -> (B, H, W, C)``."""
    b, c = windows.shape[0], windows.shape[-1]
    x = windows.reshape(b, grid[0] // window[0], grid[1] // window[1], *window, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, *grid, c)


class WindowAttention(nnx.Module):
    """Multi-head Swin-V2 attention within windows: ``(B, H, W, C) -> (B, H, W, C)``.

    Args:
      channels: token width ``C``, a multiple of ``n_heads``.
      n_heads: attention heads.
      rngs: random streams for the initialisation.
    """

    def __init__(self, channels: int, n_heads: int, *, rngs: nnx.Rngs) -> None:
        check_positive(channels=channels, n_heads=n_heads)
        if channels % n_heads:
            raise ValueError(f"channels ({channels}) must be a multiple of n_heads ({n_heads})")
        self.n_heads = n_heads
        self.query = nnx.Linear(channels, channels, rngs=rngs)
        self.key = nnx.Linear(channels, channels, use_bias=False, rngs=rngs)
        self.value = nnx.Linear(channels, channels, rngs=rngs)
        self.output = nnx.Linear(channels, channels, rngs=rngs)
        self.logit_scale = nnx.Param(jnp.full((n_heads,), math.log(10.0)))
        self.cpb_hidden = nnx.Linear(2, _CPB_HIDDEN, rngs=rngs)
        self.cpb_out = nnx.Linear(_CPB_HIDDEN, n_heads, use_bias=False, rngs=rngs)

    def position_bias(self, window: Pair) -> jax.Array:
        """``(1, heads, T, T)``: the continuous relative position bias of a window."""
        coordinates = jnp.asarray(_relative_coordinates(window))
        table = self.cpb_out(jax.nn.relu(self.cpb_hidden(coordinates)))
        table = table.reshape(-1, self.n_heads)[_relative_index(window)]    # (T, T, heads)
        return 16.0 * jax.nn.sigmoid(table.transpose(2, 0, 1))[None]

    def __call__(self, x: jax.Array, window: Pair, shift: Pair = (0, 0)) -> jax.Array:
        """``(B, H, W, C) -> (B, H, W, C)`` with windows ``window`` rolled by ``shift``."""
        grid = x.shape[1:3]
        pads = [(-n) % m for n, m in zip(grid, window)]
        x = jnp.pad(x, ((0, 0), (0, pads[0]), (0, pads[1]), (0, 0)))
        padded = x.shape[1:3]
        if any(shift):
            x = jnp.roll(x, (-shift[0], -shift[1]), axis=(1, 2))
        tokens = partition(x, window)                                   # (B, nW, T, C)

        def heads(y: jax.Array) -> jax.Array:                           # (B, nW, T, heads, d)
            return y.reshape(*y.shape[:-1], self.n_heads, -1)

        def unit(y: jax.Array) -> jax.Array:
            return y / jnp.maximum(jnp.linalg.norm(y, axis=-1, keepdims=True), 1e-12)

        scale = jnp.exp(jnp.minimum(self.logit_scale[...], _MAX_LOGIT_SCALE))[:, None]
        q = unit(heads(self.query(tokens))) * scale.astype(tokens.dtype)
        k = unit(heads(self.key(tokens)))
        v = heads(self.value(tokens))
        bias = self.position_bias(window)                               # (1, heads, T, T)
        if any(shift):   # Swin-V2 adds -100 (not -inf) across regions; kept for its checkpoints
            bias = bias + jnp.where(_shift_mask(padded, window, shift), 0.0, _MASKED)
        attend = functools.partial(jax.nn.dot_product_attention, bias=bias.astype(tokens.dtype),
                                   scale=1.0)
        out = jax.vmap(attend)(q, k, v)                # windows are the attention batch
        out = self.output(out.reshape(tokens.shape))
        x = merge(out, window, padded)
        if any(shift):
            x = jnp.roll(x, shift, axis=(1, 2))
        return x[:, :grid[0], :grid[1]]
