r"""MgNO (He, Liu, Xu, ICLR 2024): linear operators between neurons as multigrid V-cycles.

A layer is :math:`u \leftarrow \sigma\big(\mathcal{W}u + W_0 u + b\big)` where
:math:`\mathcal{W}` maps all ``C_f`` input functions to all ``C_u`` output functions at once
as one multi-channel V-cycle (:class:`MgConv`), :math:`W_0` is a 1×1 convolution and
:math:`b` a per-channel bias. No lifting or projection beyond the final 1×1 map
``C_u → C_out``:

.. code-block:: text

    a (B, *n, C_in) ─ L × [u ← σ(MgConv(u) + Conv1x1(u))] ─ Conv1x1 (no bias) ─ (B, *n, C_out)

One :class:`MgConv` (all convolutions 3^d, no bias; ``levels = [[ν_0, μ_0], ..., [ν_J,
μ_J]]``, ``J + 1`` grids, each coarser by 2):

* level 0: :math:`u = S(f)`, then :math:`\nu_0 - 1` corrections
  :math:`u \leftarrow u + S(f - A u)` (every iteration its own ``A: C_u→C_f``, ``S: C_f→C_u``);
* down to level ``l``: :math:`f \leftarrow R_l f`, :math:`u \leftarrow \Pi_l u` (stride-2
  convolutions), then :math:`\nu_l` corrections;
* up, ``l = J-1 .. 0``: :math:`u_l \leftarrow u_l + P_l u_{l+1}` (a stride-2 transposed
  convolution with kernel ``prolongation_kernels[l]``, cropped to the finer grid — any grid
  size works), then :math:`\mu_l` corrections.

Boundary conditions come from the convolutions' padding (``padding_mode``): ``"zeros"``
(Dirichlet-like, Darcy), ``"periodic"`` (Navier-Stokes on a torus), ``"reflect"`` or
``"replicate"`` (Neumann-like).

Parameters: with ``C_f = C_u = C`` one MgConv has :math:`9C^2(1 + 2(\sum\nu + \sum\mu - 1)
+ 2J) + C^2 \sum_l k_l^2` in 2-D. The reference Darcy model (``C = 24``, 5 layers, levels
``[[1,0]]*5 + [[2,0]]``, kernels ``(3, 4, 3, 3, 4)``) has 678,093 (MODELS.md: ≈ 0.68 M).

Good values: Darcy ``hidden_channels`` 24, 4-5 layers, 5-6 levels with one pre-smoothing each
and two on the coarsest, ``padding_mode="zeros"``; Navier-Stokes 32 channels, 5 levels,
``"periodic"``. The coarsest grid needs at least 2 cells per axis. Unlike the reference code
nothing is tied to one grid size (its Navier-Stokes variant hard-wires a 64² LayerNorm);
kernels are in cells, so evaluating at another resolution changes the operator somewhat.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from nopx.layers import channel_linear, get_activation
from nopx.layers.checks import check_choice, check_positive
from nopx.models.registry import register

PADDING_MODES = {"zeros": "constant", "periodic": "wrap", "reflect": "reflect",
                 "replicate": "edge"}
DARCY_LEVELS = ((1, 0),) * 5 + ((2, 0),)

# PyTorch's default convolution initialisation: U(±1/sqrt(fan_in)).
_torch_like = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class _Conv(nnx.Module):
    """A bias-free 3^d convolution with explicit boundary padding, stride 1 or 2."""

    def __init__(self, in_channels: int, out_channels: int, dim: int, padding_mode: str, *,
                 stride: int = 1, rngs: nnx.Rngs) -> None:
        self.mode = PADDING_MODES[padding_mode]
        self.conv = nnx.Conv(in_channels, out_channels, (3,) * dim, strides=stride,
                             padding="VALID", use_bias=False, kernel_init=_torch_like, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, *n, C_in) -> (B, *ceil(n/stride), C_out)``."""
        pad = [(0, 0)] + [(1, 1)] * (x.ndim - 2) + [(0, 0)]
        return self.conv(jnp.pad(x, pad, mode=self.mode))


class _Prolongation(nnx.Module):
    """A stride-2 transposed convolution onto a given finer grid.

    The coarse input is first padded (``padding_mode``) by enough cells that every kept
    output cell has all its contributions: with ``"periodic"`` the prolongation is periodic
    too, so a periodic V-cycle commutes with even shifts.
    """

    def __init__(self, channels: int, dim: int, kernel: int, padding_mode: str, *,
                 rngs: nnx.Rngs) -> None:
        if kernel < 3:
            raise ValueError(f"prolongation kernels must be at least 3, got {kernel}")
        self.mode = PADDING_MODES[padding_mode]
        self.pad = -(-kernel // 2)
        self.conv = nnx.ConvTranspose(channels, channels, (kernel,) * dim, strides=2,
                                      padding="VALID", use_bias=False, kernel_init=_torch_like,
                                      rngs=rngs)

    def __call__(self, x: jax.Array, fine: Sequence[int]) -> jax.Array:
        """``(B, *m, C) -> (B, *fine, C)`` (``fine[k]`` is ``2m_k`` or ``2m_k - 1``)."""
        widths = [(0, 0)] + [(self.pad, self.pad)] * (x.ndim - 2) + [(0, 0)]
        y = self.conv(jnp.pad(x, widths, mode=self.mode))
        start = 1 + 2 * self.pad
        return y[(slice(None), *[slice(start, start + n) for n in fine], slice(None))]


class _Smoother(nnx.Module):
    """One correction ``u ← u + S(f - A u)``."""

    def __init__(self, f_channels: int, u_channels: int, dim: int, padding_mode: str, *,
                 rngs: nnx.Rngs) -> None:
        self.a = _Conv(u_channels, f_channels, dim, padding_mode, rngs=rngs)
        self.s = _Conv(f_channels, u_channels, dim, padding_mode, rngs=rngs)

    def __call__(self, u: jax.Array, f: jax.Array) -> jax.Array:
        return u + self.s(f - self.a(u))


def _smoothers(count: int, f_channels: int, u_channels: int, dim: int, padding_mode: str,
               rngs: nnx.Rngs) -> nnx.List:
    return nnx.List([_Smoother(f_channels, u_channels, dim, padding_mode, rngs=rngs)
                     for _ in range(count)])


def _check_levels(levels: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    pairs = tuple(tuple(level) for level in levels)
    if not pairs or any(len(p) != 2 or any(not isinstance(v, int) or v < 0 for v in p)
                        for p in pairs) or pairs[0][0] < 1:
        raise ValueError(f"levels must list [pre, post] smoothing counts per grid level, "
                         f"non-negative ints with at least one pre-smoothing on the finest; "
                         f"got {levels!r}")
    return pairs


class MgConv(nnx.Module):
    """One multigrid V-cycle as a linear operator: ``(B, *n, C_f) -> (B, *n, C_u)``.

    See the module docstring. ``prolongation_kernels`` has one kernel size per coarse level
    (``len(levels) - 1``); ``None`` uses 4 everywhere.

    >>> import jax.numpy as jnp
    >>> conv = MgConv(3, 8, levels=((1, 0), (1, 0), (2, 0)), rngs=nnx.Rngs(0))
    >>> conv(jnp.ones((2, 21, 20, 3))).shape
    (2, 21, 20, 8)
    """

    def __init__(self, in_channels: int, out_channels: int, *,
                 levels: Sequence[Sequence[int]] = DARCY_LEVELS, dim: int = 2,
                 padding_mode: str = "zeros", prolongation_kernels: Sequence[int] | None = None,
                 rngs: nnx.Rngs) -> None:
        check_positive(in_channels=in_channels, out_channels=out_channels, dim=dim)
        check_choice("padding_mode", padding_mode, tuple(PADDING_MODES))
        self.levels = _check_levels(levels)
        coarse = len(self.levels) - 1
        kernels = (4,) * coarse if prolongation_kernels is None else tuple(prolongation_kernels)
        if len(kernels) != coarse:
            raise ValueError(f"prolongation_kernels needs {coarse} sizes (one per coarse level), "
                             f"got {prolongation_kernels!r}")
        c_f, c_u = in_channels, out_channels
        self.init = _Conv(c_f, c_u, dim, padding_mode, rngs=rngs)
        self.pre = nnx.List([
            _smoothers(pre - (level == 0), c_f, c_u, dim, padding_mode, rngs)
            for level, (pre, _) in enumerate(self.levels)])
        self.post = nnx.List([_smoothers(post, c_f, c_u, dim, padding_mode, rngs)
                              for _, post in self.levels[:-1]])
        self.restrict_f = nnx.List([_Conv(c_f, c_f, dim, padding_mode, stride=2, rngs=rngs)
                                    for _ in range(coarse)])
        self.restrict_u = nnx.List([_Conv(c_u, c_u, dim, padding_mode, stride=2, rngs=rngs)
                                    for _ in range(coarse)])
        self.prolong = nnx.List([_Prolongation(c_u, dim, k, padding_mode, rngs=rngs)
                                   for k in kernels])

    def __call__(self, f: jax.Array) -> jax.Array:
        """``(B, *n, C_f) -> (B, *n, C_u)``; the coarsest grid must keep 2 cells per axis."""
        coarsest = [-(-n // 2 ** (len(self.levels) - 1)) for n in f.shape[1:-1]]
        if min(coarsest) < 2:
            raise ValueError(f"grid {f.shape[1:-1]} is too small for {len(self.levels)} "
                             f"multigrid levels (coarsest {tuple(coarsest)}); use fewer levels")
        u = self.init(f)
        us, fs = [], []
        for level, smoothers in enumerate(self.pre):
            if level:
                f, u = self.restrict_f[level - 1](f), self.restrict_u[level - 1](u)
            for smoother in smoothers:
                u = smoother(u, f)
            us.append(u)
            fs.append(f)
        for level in reversed(range(len(self.post))):
            u = us[level] + self.prolong[level](u, us[level].shape[1:-1])
            for smoother in self.post[level]:
                u = smoother(u, fs[level])
        return u


@register("mgno")
class MgNO(nnx.Module):
    """Multigrid neural operator on a 1-3 D grid: ``(B, *n, C_in) -> (B, *n, C_out)``.

    Args:
      in_channels, out_channels: channels of the input and output fields.
      hidden_channels: ``C_u``, the width of every layer.
      n_layers: number of MgConv layers.
      levels: ``[[pre, post], ...]`` smoothing counts per grid level, finest first.
      dim: number of spatial axes.
      padding_mode: ``"zeros"``, ``"periodic"``, ``"reflect"`` or ``"replicate"``.
      prolongation_kernels: transposed-convolution kernel per coarse level (``None``: 4).
      non_linearity: activation name (:mod:`nopx.layers.activations`).
      rngs: random streams (``None``: ``nnx.Rngs(0)``).

    >>> import jax.numpy as jnp
    >>> model = MgNO(1, 1, hidden_channels=8, n_layers=2, levels=[[1, 0], [1, 0], [2, 0]])
    >>> model(jnp.ones((2, 24, 24, 1))).shape
    (2, 24, 24, 1)
    """

    # Parameter sharding over a mesh's "model" axis (nopx.parallel.param_shardings): every
    # convolution kernel (3, 3, C_in, C_out) and linear kernel along its output channels.
    sharding_rules = ((r"kernel$", -1),)

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 24,
                 n_layers: int = 5, *, levels: Sequence[Sequence[int]] = DARCY_LEVELS,
                 dim: int = 2, padding_mode: str = "zeros",
                 prolongation_kernels: Sequence[int] | None = None, non_linearity: str = "gelu",
                 rngs: nnx.Rngs | None = None) -> None:
        check_positive(in_channels=in_channels, out_channels=out_channels,
                       hidden_channels=hidden_channels, n_layers=n_layers)
        rngs = nnx.Rngs(0) if rngs is None else rngs
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dim = dim
        self.activation = get_activation(non_linearity)
        widths = [in_channels] + [hidden_channels] * n_layers
        self.mg_convs = nnx.List([
            MgConv(c_f, hidden_channels, levels=levels, dim=dim, padding_mode=padding_mode,
                   prolongation_kernels=prolongation_kernels, rngs=rngs) for c_f in widths[:-1]])
        self.linears = nnx.List([channel_linear(c_f, hidden_channels, rngs=rngs)
                                 for c_f in widths[:-1]])
        self.output = channel_linear(hidden_channels, out_channels, use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, n_1, ..., n_dim, C_in) -> (B, n_1, ..., n_dim, C_out)``."""
        if x.ndim != self.dim + 2 or x.shape[-1] != self.in_channels:
            raise ValueError(f"MgNO expects (batch, {self.dim} spatial axes, {self.in_channels} "
                             f"channels); got shape {x.shape}")
        for mg_conv, linear in zip(self.mg_convs, self.linears):
            x = self.activation(mg_conv(x) + linear(x))
        return self.output(x)
