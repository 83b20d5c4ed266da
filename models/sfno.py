r"""The spatiotemporal FNO of Spectral-Refiner (Cao et al. 2024; torch-cfd ``fno/sfno.py``).

Not the spherical FNO. It maps ``T_in`` time slices of a 2-D field to any number of future
slices, convolving over ``(x, y, t)`` (MODELS.md §4.2), channels-last throughout:

.. code-block:: text

    x (B, X, Y, T_in)
      → v = x + PE                           (B, X, Y, T_in, H): x broadcast to all H channels
      → GroupNorm(1 group) → 1×1 linear
      → v = σ(v[last slice] + FFN(K_0 v))    K_0: T_in → latent_steps time steps
      → (L-1) × v = σ(FFN(K_l v) + W_l v)     (B, X, Y, latent_steps, H)
      → reduction 1×1: H → 1                  the "latent" (B, X, Y, latent_steps, 1)
      → output operator: prepend x's last slice, K_out (1 → 1, spectral bias, temporal
        zero padding) onto out_steps + 1 steps, keep the last out_steps, add x's last slice
      → (B, X, Y, out_steps)

``K`` are :class:`~nopx.layers.SpaceTimeSpectralConv` (torch-cfd's modes: ``n_modes =
(12, 12, 5)`` keeps ``|k_x|, |k_y| ≤ 12`` (``-12..11``) and the 5 lowest temporal bins), FFN
is a :class:`~nopx.layers.ChannelMLP` ``H → channel_expansion·H → H``, ``W`` a 1×1 linear map.
The positional encoding PE has ``H`` channels: the ``x`` and ``y`` coordinates, the time
coordinate ``t_j = j/100`` (``j = 1..T_in``), then ``exp(β t)·sin(π(k+1)t)`` and ``cos``
alternating for ``k = 0..H-4``, constant in space.

The output operator's spectral convolution, ``output_conv``, is the layer Spectral-Refiner
fine-tunes (:mod:`nopx.refine`); :meth:`SFNO.trunk` computes everything before it, so the
latent can be cached, and :func:`output_operator` applies it alone.

**Parameter count** at the main configuration (``n_modes=(12, 12, 5)``, 20 channels, 4
layers, expansion 4; complex entries counted as 2 reals; the count does not depend on
``T_in``, ``latent_steps`` or the grid): **9,242,461** =

* each of the 4 width→width spectral convolutions: ``2·(24·24·5)·20·20`` = 2,304,000;
* lifting: GroupNorm 40 + linear 420 + FFN (20·80+80 + 80·20+20 =) 3,300;
* 3 blocks: FFN 3,300 + ``W`` 420 each;
* reduction 21; output convolution: weights ``2·24·24·5`` = 5,760 + bias 5,760;

i.e. 4·2,304,000 + 3,760 + 3·3,720 + 21 + 11,520. This is torch-cfd's ``SFNO`` at its
current code (``get_num_params`` counts real/imag pairs). The notebooks print older
versions: 9,250,333 (``ex2_SFNO_train_fnodata``: FFN hidden width fixed at 128, not
4·20 — 4 FFNs × (5,268 − 3,300) = +7,872) and 9,245,131 (``ex2_SFNO_finetune_fnodata``:
FFN width 128, no FFN in the lifting, PE of ``H + 3`` channels with GroupNorm/linear on 23).

>>> import jax.numpy as jnp
>>> model = SFNO(4, 6, n_modes=(4, 4, 3), hidden_channels=6, n_layers=2, latent_steps=4)
>>> model(jnp.ones((2, 16, 16, 4))).shape
(2, 16, 16, 6)
>>> model(jnp.ones((2, 16, 16, 4)), out_steps=9).shape
(2, 16, 16, 9)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from nopx.layers import ChannelMLP, channel_linear, get_activation, grid_coordinates
from nopx.layers.checks import check_choice, check_positive
from nopx.layers.fourier import Method, Norm
from nopx.layers.spectral_conv_st import SpaceTimeSpectralConv
from nopx.models.registry import register

#: torch-cfd's time coordinate: step ``j`` of the input sits at ``t = j / 100``.
TIME_STEPS_PER_UNIT = 100


def space_time_encoding(shape: Sequence[int], channels: int, beta: float, *,
                        grid: str = "periodic", dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """The SFNO positional encoding, ``(X, Y, T, channels)`` (module docstring).

    ``grid="periodic"`` puts the spatial coordinates in ``[0, 1)`` without the endpoint (as
    :func:`~nopx.layers.grid_coordinates`: the same point gets the same value at every
    resolution); ``"endpoint"`` is torch-cfd's ``linspace(0, 1, n)``.

    >>> pe = space_time_encoding((4, 4, 3), 6, beta=0.0)
    >>> [round(float(v), 4) for v in pe[0, 0, :, 2]]          # time coordinate
    [0.01, 0.02, 0.03]
    >>> [round(float(v), 4) for v in pe[0, 0, 0, 3:]]         # sin(πt), cos(2πt), sin(3πt)
    [0.0314, 0.998, 0.0941]
    """
    check_choice("positional_grid", grid, ("periodic", "endpoint"))
    *spatial, steps = shape
    if grid == "periodic":
        coords = grid_coordinates(tuple(spatial), dtype)
    else:
        axes = [jnp.linspace(0.0, 1.0, n, dtype=dtype) for n in spatial]
        coords = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), axis=-1)
    t = jnp.arange(1, steps + 1, dtype=dtype) / TIME_STEPS_PER_UNIT
    waves = [jnp.exp(beta * t) * (jnp.sin if k % 2 == 0 else jnp.cos)(jnp.pi * (k + 1) * t)
             for k in range(channels - len(spatial) - 1)]
    temporal = jnp.stack([t, *waves], axis=-1)                           # (T, channels - d)
    return jnp.concatenate([
        jnp.broadcast_to(coords[..., None, :], (*spatial, steps, len(spatial))),
        jnp.broadcast_to(temporal, (*spatial, *temporal.shape))], axis=-1)


def output_operator(conv: SpaceTimeSpectralConv, latent: jax.Array, x: jax.Array,
                    out_steps: int, *, time_derivative: bool = False,
                    ) -> jax.Array | tuple[jax.Array, jax.Array]:
    """The SFNO output operator: latent ``(B, X, Y, L, 1)`` → prediction ``(B, X, Y, out_steps)``.

    The last input slice of ``x (B, X, Y, T_in)`` is prepended in time, ``conv`` maps the
    ``L + 1`` steps to ``out_steps + 1``, the last ``out_steps`` are kept and the last input
    slice is added back (the network predicts the change from it). With
    ``time_derivative=True`` returns ``(w, dw)``, ``dw`` the exact derivative of the
    prediction's temporal series per output step (see :class:`SpaceTimeSpectralConv`).
    """
    last = x[..., -1:]
    v = jnp.concatenate([last[..., None], latent], axis=-2)
    out = conv(v, out_steps + 1, time_derivative=time_derivative)
    if not time_derivative:
        return last + out[..., -out_steps:, 0]
    y, dy = out
    return last + y[..., -out_steps:, 0], dy[..., -out_steps:, 0]


class SFNOBlock(nnx.Module):
    """``v -> σ(FFN(K v) + W v)`` on ``(B, X, Y, T, H)``; ``K`` keeps the time length."""

    def __init__(self, channels: int, n_modes: Sequence[int], *, channel_expansion: int,
                 activation: str, fft_norm: Norm, transform: Method, rngs: nnx.Rngs) -> None:
        self.conv = SpaceTimeSpectralConv(channels, channels, n_modes, fft_norm=fft_norm,
                                          transform=transform, rngs=rngs)
        self.mlp = ChannelMLP(channels, channels, channel_expansion * channels,
                              non_linearity=activation, rngs=rngs)
        self.skip = channel_linear(channels, channels, rngs=rngs)
        self.activation = get_activation(activation)

    def __call__(self, v: jax.Array) -> jax.Array:
        return self.activation(self.mlp(self.conv(v)) + self.skip(v))


@register("sfno")
class SFNO(nnx.Module):
    """Spatiotemporal FNO: ``(B, X, Y, T_in) -> (B, X, Y, out_steps)`` (module docstring).

    Args:
      in_channels: number of input time slices ``T_in`` the model is built for (the time
        axis is the channel axis). Other input lengths also run (the encoding and the first
        spectral convolution adapt), as in torch-cfd.
      out_channels: default number of predicted slices ``T_out`` (``out_steps`` overrides).
      n_modes: ``(m_x, m_y, m_t)``: spatial modes per sign, temporal bins (torch-cfd's).
      hidden_channels: width ``H`` (at least 3: the encoding's coordinates).
      n_layers: spectral layers, the lifting's included (torch-cfd ``num_spectral_layers``).
      latent_steps: time steps of the hidden layers.
      channel_expansion: FFN hidden width as a multiple of ``H``.
      activation: ``"relu"`` (torch-cfd's default), ``"gelu"``, ...
      beta: growth rate ``β`` of the temporal encoding ``exp(β t)``.
      delta: scale of the output layer's spectral bias.
      temporal_padding: zero-pad time in the output layer (against wrap-around).
      fft_norm: ``"backward"`` (torch-cfd), ``"forward"`` or ``"ortho"``.
      transform: how the truncated FFTs are computed (:mod:`nopx.layers.fourier`).
      positional_grid: ``"periodic"`` or ``"endpoint"`` (:func:`space_time_encoding`).
      rngs: random streams (``None``: ``nnx.Rngs(0)``).
    """

    # Parameter sharding over a mesh's "model" axis (nopx.parallel.param_shardings): the
    # space-time spectral weights (*kept, C_in, C_out) and the channel-MLP and skip kernels
    # along their output channels; the rest is replicated.
    sharding_rules = ((r"weight_(real|imag)$", -1), (r"kernel$", -1))

    def __init__(self, in_channels: int, out_channels: int,
                 n_modes: Sequence[int] = (12, 12, 5), hidden_channels: int = 20,
                 n_layers: int = 4, *, latent_steps: int = 10, channel_expansion: int = 4,
                 activation: str = "relu", beta: float = 0.01, delta: float = 0.1,
                 temporal_padding: bool = True, fft_norm: Norm = "backward",
                 transform: Method = "auto", positional_grid: str = "periodic",
                 rngs: nnx.Rngs | None = None) -> None:
        check_positive(in_channels=in_channels, out_channels=out_channels,
                       hidden_channels=hidden_channels, n_layers=n_layers,
                       latent_steps=latent_steps, channel_expansion=channel_expansion)
        if len(n_modes) != 3:
            raise ValueError(f"n_modes must be (m_x, m_y, m_t) for 2-D fields in time, "
                             f"got {n_modes!r}")
        if hidden_channels < 3:
            raise ValueError(f"hidden_channels must be at least 3 (the encoding holds x, y "
                             f"and t), got {hidden_channels}")
        check_choice("positional_grid", positional_grid, ("periodic", "endpoint"))
        rngs = nnx.Rngs(0) if rngs is None else rngs
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n_modes = tuple(n_modes)
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.beta = float(beta)
        self.positional_grid = positional_grid
        self.activation = get_activation(activation)
        spectral = dict(fft_norm=fft_norm, transform=transform)
        self.norm = nnx.GroupNorm(hidden_channels, num_groups=1, epsilon=1e-7,
                                  use_fast_variance=False, rngs=rngs)
        self.lift = channel_linear(hidden_channels, hidden_channels, rngs=rngs)
        self.lift_conv = SpaceTimeSpectralConv(hidden_channels, hidden_channels, self.n_modes,
                                               out_steps=latent_steps, **spectral, rngs=rngs)
        self.lift_mlp = ChannelMLP(hidden_channels, hidden_channels,
                                   channel_expansion * hidden_channels,
                                   non_linearity=activation, rngs=rngs)
        # A Python loop over the blocks, as in the FNO (a scan over stacked blocks made the
        # train step slower on XLA:CPU; see models/fno.py).
        self.blocks = nnx.List([
            SFNOBlock(hidden_channels, self.n_modes, channel_expansion=channel_expansion,
                      activation=activation, **spectral, rngs=rngs)
            for _ in range(n_layers - 1)])
        self.reduction = channel_linear(hidden_channels, 1, rngs=rngs)
        self.output_conv = SpaceTimeSpectralConv(1, 1, self.n_modes, bias=True, delta=delta,
                                                 temporal_padding=temporal_padding,
                                                 **spectral, rngs=rngs)

    def _check_input(self, x: jax.Array) -> None:
        if x.ndim != 4:
            raise ValueError(f"SFNO expects (batch, x, y, time slices); got shape {x.shape}")

    def trunk(self, x: jax.Array) -> jax.Array:
        """All but the output operator: ``(B, X, Y, T_in) -> (B, X, Y, latent_steps, 1)``."""
        self._check_input(x)
        pe = space_time_encoding(x.shape[1:], self.hidden_channels, self.beta,
                                 grid=self.positional_grid, dtype=x.dtype)
        v = self.lift(self.norm(x[..., None] + pe))
        # The last slice of the lifted input, broadcast over the latent steps, is the skip.
        v = self.activation(v[..., -1:, :] + self.lift_mlp(self.lift_conv(v)))
        for block in self.blocks:
            v = block(v)
        return self.reduction(v)

    def __call__(self, x: jax.Array, out_steps: int | None = None) -> jax.Array:
        """``(B, X, Y, T_in) -> (B, X, Y, out_steps or out_channels)``."""
        return output_operator(self.output_conv, self.trunk(x), x,
                               out_steps or self.out_channels)
