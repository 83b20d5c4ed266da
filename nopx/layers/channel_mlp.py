"""Pointwise (1×1) layers over the channel axis: a linear map and a small MLP.

Both act on the last axis, so they take channels-last ``(B, *spatial, C)`` arrays (or any
``(..., C)``). Weights and biases start as PyTorch's ``Conv1d``/``Linear`` do,
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, so a freshly built model trains like the
neuraloperator one.

>>> import jax.numpy as jnp
>>> mlp = ChannelMLP(3, 4, hidden_channels=8, rngs=nnx.Rngs(0))
>>> mlp(jnp.ones((2, 16, 16, 3))).shape
(2, 16, 16, 4)
"""

from __future__ import annotations

import math

import jax
from flax import nnx

from nopx.layers.activations import get_activation
from nopx.layers.checks import check_positive


def _torch_uniform(fan_in: int) -> nnx.Initializer:
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jax.numpy.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def channel_linear(in_channels: int, out_channels: int, *, use_bias: bool = True,
                   rngs: nnx.Rngs) -> nnx.Linear:
    """A 1×1 convolution: ``(..., C_in) -> (..., C_out)``, PyTorch-style initialisation."""
    check_positive(in_channels=in_channels, out_channels=out_channels)
    init = _torch_uniform(in_channels)
    return nnx.Linear(in_channels, out_channels, use_bias=use_bias, kernel_init=init,
                      bias_init=init, rngs=rngs)


class ChannelMLP(nnx.Module):
    """``n_layers`` pointwise linear maps with the activation between them (not after the last).

    ``(..., C_in) -> (..., C_out)``; every inner layer has ``hidden_channels`` channels.
    Used for lifting and projection (``C → ratio·H → H``) and inside the FNO block
    (``C → round(expansion·C) → C``).
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int, *,
                 n_layers: int = 2, non_linearity: str = "gelu", rngs: nnx.Rngs) -> None:
        check_positive(hidden_channels=hidden_channels, n_layers=n_layers)
        sizes = [in_channels] + [hidden_channels] * (n_layers - 1) + [out_channels]
        self.layers = nnx.List([channel_linear(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])])
        self.non_linearity = non_linearity
        self.activation = get_activation(non_linearity)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(..., C_in) -> (..., C_out)``."""
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)
