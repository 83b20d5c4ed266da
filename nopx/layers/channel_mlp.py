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
import jax.numpy as jnp
from flax import nnx

from nopx.layers.activations import get_activation
from nopx.layers.checks import check_positive


def _torch_uniform(fan_in: int) -> nnx.Initializer:
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jax.numpy.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


@jax.custom_vjp
def _pointwise(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jnp.dot(x, kernel)


Residuals = tuple[jax.Array, jax.Array]


def _pointwise_fwd(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, Residuals]:
    return jnp.dot(x, kernel), (x, kernel)


def _explicitly_sharded(x: jax.Array) -> bool:
    return any(t == jax.sharding.AxisType.Explicit
               for t in jax.typeof(x).sharding.mesh.axis_types)


def _pointwise_bwd(res: Residuals, grad: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = res
    if _explicitly_sharded(x):  # autodiff's transpose knows how to shard the contraction
        return jax.vjp(jnp.dot, x, kernel)[1](grad)
    # The weight gradient as one 2-D product over all points. Autodiff contracts the batch
    # and spatial axes of the N-d operands instead, which XLA:CPU lowers to a transposed copy
    # plus an Eigen GEMM (K = B·H·W, M, N = channels) that mostly packs operands: this form
    # took config a's train step (bench/train_step.py) from about 410 to 300 ms of CPU
    # (contended 2-core machine, 2026-11-30).
    c_in, c_out = kernel.shape
    d_kernel = jnp.einsum("ni,no->io", x.reshape(-1, c_in), grad.reshape(-1, c_out))
    return jnp.dot(grad, kernel.T), d_kernel


_pointwise.defvjp(_pointwise_fwd, _pointwise_bwd)


def _dot_general(lhs: jax.Array, rhs: jax.Array, dimension_numbers, precision=None,
                 **kwargs) -> jax.Array:
    """``nnx.Linear``'s product, with the weight gradient of :func:`_pointwise`.

    Anything but the plain unsharded last-axis product goes to ``lax.dot_general``.
    """
    plain = precision is None and kwargs.get("out_sharding") is None and set(kwargs) <= {"out_sharding"}
    if not plain:
        return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision, **kwargs)
    return _pointwise(lhs, rhs)


def channel_linear(in_channels: int, out_channels: int, *, use_bias: bool = True,
                   rngs: nnx.Rngs) -> nnx.Linear:
    """A 1×1 convolution: ``(..., C_in) -> (..., C_out)``, PyTorch-style initialisation."""
    check_positive(in_channels=in_channels, out_channels=out_channels)
    init = _torch_uniform(in_channels)
    return nnx.Linear(in_channels, out_channels, use_bias=use_bias, kernel_init=init,
                      bias_init=init, dot_general=_dot_general, rngs=rngs)


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
