"""DeepONet (Lu et al. 2021) and MultiONet (Zang & Koutsourelakis 2025) as grid models.

Both learn ``G(a)(y) ≈ u(y)`` from a *branch* network on the input function ``a`` and a
*trunk* network on the query coordinates ``y``:

.. math::

    \\text{DeepONet:}\\quad G(a)(y) = \\sum_{k=1}^{p} b_k(a)\\,\\tau_k(y) + b_0,
    \\qquad
    \\text{MultiONet:}\\quad G(a)(y) = \\frac1L \\sum_{l=1}^{L} w_l
        \\langle a^{(l)}, y^{(l)} \\rangle + b_0,

where MultiONet's ``a^{(l)}``, ``y^{(l)}`` are the ``l``-th hidden layers of two towers of
equal widths: the inner product is taken after every summed layer, not only the last.

As grid models they map ``(B, *n, C_in) -> (B, *n, C_out)``: the branch sees the input
sampled at a fixed ``sensors`` grid (an input on another grid is linearly resampled to it),
either flattened (``encoder="mlp"``) or through strided convolutions (``encoder="cnn"``,
the DGNO papers' Darcy encoder); the trunk gets the coordinates of the output grid in
``[0, 1)`` (as :func:`nopx.layers.grid_coordinates`). :meth:`query` evaluates at any points.

Parameter counts equal the reference code's: 682,753 for the DGNO Darcy DeepONet baseline
(29² sensors, convs 1 → 64 → 128, branch 3200 → 128 → 128, trunk 2 → 128 ×4, ReLU) and
2,568,245 for the DGenNO Darcy MultiONet (convs 1 → 128 → 256, latent 256, towers 100 ×5,
4 summed layers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from nopx.layers import ACTIVATIONS, grid_coordinates
from nopx.layers.activations import Activation
from nopx.layers.checks import check_choice, check_positive
from nopx.models.registry import register

#: The activations of the DGNO code on top of :data:`nopx.layers.ACTIVATIONS`.
OPERATOR_ACTIVATIONS: dict[str, Activation] = {
    **ACTIVATIONS,
    "silu_id": lambda z: jax.nn.silu(z) + z,
    "silu_sin": lambda z: jax.nn.silu(jnp.sin(math.pi * (z + 1.0))) + z,
    "tanh_sin": lambda z: jnp.tanh(jnp.sin(math.pi * (z + 1.0))) + z,
}
MULTI_OUTPUT = ("split_branch", "split_trunk", "split_both")


def _activation(name: str, key: str = "non_linearity") -> Activation:
    check_choice(key, name, sorted(OPERATOR_ACTIVATIONS))
    return OPERATOR_ACTIVATIONS[name]


def _check_sizes(name: str, sizes: Sequence[int]) -> tuple[int, ...]:
    if isinstance(sizes, (int, str)) or not isinstance(sizes, Sequence):
        raise ValueError(f"{name} must be a list of layer widths, got {sizes!r}")
    for i, size in enumerate(sizes):
        check_positive(**{f"{name}[{i}]": size})
    return tuple(sizes)


class FNN(nnx.Module):
    """Fully connected layers ``sizes[0] → … → sizes[-1]`` on the last axis.

    ``ensemble`` independent copies (DeepONet's stacked branch) share one batched weight
    per layer: the input ``(..., E or 1, F)`` gives ``(..., E, sizes[-1])``. Glorot-normal
    weights and zero biases, as DeepXDE.
    """

    def __init__(self, sizes: Sequence[int], activation: Activation, *,
                 activate_output: bool, ensemble: int = 1, rngs: nnx.Rngs) -> None:
        init = nnx.initializers.glorot_normal(in_axis=-2, out_axis=-1, batch_axis=(0,))
        self.kernels = nnx.List([nnx.Param(init(rngs.params(), (ensemble, a, b)))
                                 for a, b in zip(sizes, sizes[1:])])
        self.biases = nnx.List([nnx.Param(jnp.zeros((ensemble, b))) for b in sizes[1:]])
        self.activation = activation
        self.activate_output = activate_output

    def layers(self, x: jax.Array) -> list[jax.Array]:
        """The output of every layer, activated as in :meth:`__call__`: ``(..., E, width)``."""
        outputs = []
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            x = (x[..., None, :] @ kernel[...])[..., 0, :] + bias[...]
            if self.activate_output or i < len(self.kernels) - 1:
                x = self.activation(x)
            outputs.append(x)
        return outputs

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(..., E or 1, sizes[0]) -> (..., E, sizes[-1])``."""
        return self.layers(x)[-1]


class ConvEncoder(nnx.Module):
    """Strided "valid" convolutions, each activated, then flattened: ``(B, *sensors, C) -> (B, F)``.

    Every convolution shrinks an axis of ``n`` points to ``(n − kernel) // stride + 1``;
    :attr:`features` is the flattened size ``F``.
    """

    def __init__(self, in_channels: int, sensors: tuple[int, ...], channels: Sequence[int],
                 kernel_size: int, stride: int, activation: Activation, *,
                 rngs: nnx.Rngs) -> None:
        check_positive(kernel_size=kernel_size, stride=stride)
        widths = (in_channels, *_check_sizes("conv_channels", channels))
        d = len(sensors)
        self.convs = nnx.List([nnx.Conv(a, b, (kernel_size,) * d, strides=(stride,) * d,
                                        padding="VALID", rngs=rngs)
                               for a, b in zip(widths, widths[1:])])
        grid = sensors
        for _ in channels:
            grid = tuple((n - kernel_size) // stride + 1 for n in grid)
            if min(grid) < 1:
                raise ValueError(f"the {len(channels)} convolutions of kernel {kernel_size} and "
                                 f"stride {stride} do not fit the sensor grid {sensors}")
        self.features = math.prod(grid) * widths[-1]
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, *sensors, C) -> (B, F)``."""
        for conv in self.convs:
            x = self.activation(conv(x))
        return x.reshape(x.shape[0], -1)


def _contract(branch: jax.Array, trunk: jax.Array) -> jax.Array:
    """``Σ_k branch[b, g, k] trunk[(b,) n, g, k]``.

    ``branch (B, G, k)`` and ``trunk (N, G, k)`` (shared points) or ``(B, N, G, k)`` →
    ``(B, N, G)``.
    """
    return jnp.einsum("bgk,ngk->bng" if trunk.ndim == 3 else "bgk,bngk->bng", branch, trunk)


class _GridOperator(nnx.Module):
    """What DeepONet and MultiONet share: sensor sampling, the encoder, grid queries.

    A subclass defines ``query(x, points)``: the output ``(B, N, C_out)`` at ``points``
    (``(N, d)`` shared or ``(B, N, d)`` per sample, in [0, 1)); ``__call__`` queries the
    input's own grid.
    """

    # Parameter sharding over a mesh's "model" axis (nopx.parallel.param_shardings): the
    # branch and trunk kernels (ensemble, in, out) and the encoder's conv kernels along their
    # output axis; the rest is replicated.
    sharding_rules = ((r"kernels/\d+$", -1), (r"kernel$", -1))

    def __init__(self, in_channels: int, out_channels: int, sensors: Sequence[int],
                 encoder: str, conv_channels: Sequence[int], kernel_size: int, stride: int,
                 activation: Activation, rngs: nnx.Rngs) -> None:
        """The sensors and encoder; :attr:`features` is the width of the encoded input."""
        check_positive(in_channels=in_channels, out_channels=out_channels)
        check_choice("encoder", encoder, ("mlp", "cnn"))
        self.in_channels, self.out_channels = in_channels, out_channels
        self.sensors = _check_sizes("sensors", sensors)
        if not 1 <= len(self.sensors) <= 3:
            raise ValueError(f"sensors is the grid shape of a 1-, 2- or 3-D input, got {sensors!r}")
        if encoder == "cnn":
            self.encoder = ConvEncoder(in_channels, self.sensors, conv_channels, kernel_size,
                                       stride, activation, rngs=rngs)
            self.features = self.encoder.features
        else:
            self.encoder = None
            self.features = math.prod(self.sensors) * in_channels

    def encode(self, x: jax.Array) -> jax.Array:
        """``(B, *n, C_in) -> (B, F)``: the input at the sensors, through the encoder."""
        dim = len(self.sensors)
        if x.ndim != dim + 2 or x.shape[-1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects (batch, {dim} spatial axes, "
                             f"{self.in_channels} channels); got shape {x.shape}")
        if x.shape[1:-1] != self.sensors:
            x = jax.image.resize(x, (x.shape[0], *self.sensors, x.shape[-1]), "linear")
        return x.reshape(x.shape[0], -1) if self.encoder is None else self.encoder(x)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, *n, C_in) -> (B, *n, C_out)``: the output on the input's grid."""
        spatial = x.shape[1:-1]
        points = grid_coordinates(spatial, x.dtype).reshape(-1, len(spatial))
        return self.query(x, points).reshape(*x.shape[:-1], self.out_channels)


@register("deeponet")
class DeepONet(_GridOperator):
    """DeepONet, unstacked or stacked: ``(B, *n, C_in) -> (B, *n, C_out)``.

    Args:
      in_channels, out_channels: channels of the input and output fields.
      sensors: grid shape at which the branch samples the input, e.g. ``(29, 29)``.
      n_basis: ``p``, basis functions per output.
      branch_layers: hidden widths of the branch FNN (its last layer, to the coefficients,
        is linear).
      trunk_layers: hidden widths of the trunk FNN (activated on its output too, as DeepXDE).
      encoder: ``"mlp"`` (flattened sensor values into the branch FNN) or ``"cnn"``.
      conv_channels, kernel_size, stride: the ``"cnn"`` encoder's convolutions.
      stacked: one branch FNN per coefficient (Lu et al.'s stacked DeepONet) instead of one
        FNN for all (unstacked, the default).
      multi_output: how several outputs share the nets: ``"split_branch"`` (branch gives
        ``p·C_out`` coefficients, one trunk of ``p``), ``"split_trunk"`` (one branch of ``p``,
        trunk of ``p·C_out``) or ``"split_both"`` (both ``p``, cut into ``C_out`` groups).
      non_linearity: activation of both nets (see :data:`OPERATOR_ACTIVATIONS`).
      rngs: random streams for the initialisation (``None``: ``nnx.Rngs(0)``).

    >>> import jax.numpy as jnp
    >>> model = DeepONet(1, 2, sensors=(16, 16), n_basis=8, branch_layers=(32,),
    ...                  trunk_layers=(32,))
    >>> model(jnp.ones((3, 16, 16, 1))).shape
    (3, 16, 16, 2)
    >>> model.query(jnp.ones((3, 16, 16, 1)), jnp.array([[0.5, 0.25]])).shape   # any points
    (3, 1, 2)
    """

    def __init__(self, in_channels: int, out_channels: int, sensors: Sequence[int],
                 n_basis: int = 128, branch_layers: Sequence[int] = (128, 128),
                 trunk_layers: Sequence[int] = (128, 128, 128), *, encoder: str = "mlp",
                 conv_channels: Sequence[int] = (64, 128), kernel_size: int = 5, stride: int = 2,
                 stacked: bool = False, multi_output: str = "split_branch",
                 non_linearity: str = "relu", rngs: nnx.Rngs | None = None) -> None:
        rngs = nnx.Rngs(0) if rngs is None else rngs
        activation = _activation(non_linearity)
        super().__init__(in_channels, out_channels, sensors, encoder, conv_channels,
                         kernel_size, stride, activation, rngs)
        check_positive(n_basis=n_basis)
        check_choice("multi_output", multi_output, MULTI_OUTPUT)
        if multi_output == "split_both" and n_basis % out_channels:
            raise ValueError(f"multi_output 'split_both' cuts n_basis ({n_basis}) into "
                             f"{out_channels} groups; make it a multiple of {out_channels}")
        self.multi_output, self.n_basis = multi_output, n_basis
        n_coefficients = n_basis * (out_channels if multi_output == "split_branch" else 1)
        n_trunk = n_basis * (out_channels if multi_output == "split_trunk" else 1)
        branch = (self.features, *_check_sizes("branch_layers", branch_layers))
        self.branch = FNN((*branch, 1) if stacked else (*branch, n_coefficients), activation,
                          activate_output=False, ensemble=n_coefficients if stacked else 1,
                          rngs=rngs)
        self.trunk = FNN((len(self.sensors), *_check_sizes("trunk_layers", trunk_layers), n_trunk),
                         activation, activate_output=True, rngs=rngs)
        self.bias = nnx.Param(jnp.zeros((out_channels,)))

    def query(self, x: jax.Array, points: jax.Array) -> jax.Array:
        """``x (B, *n, C_in)``, ``points (N, d)`` or ``(B, N, d)`` → ``(B, N, C_out)``."""
        coefficients = self.branch(self.encode(x)[:, None, :])    # (B, 1 or P_b, P_b or 1)
        basis = self.trunk(points[..., None, :])                  # (..., N, 1, P_t)
        width = self.n_basis // (self.out_channels if self.multi_output == "split_both" else 1)
        coefficients = coefficients.reshape(x.shape[0], -1, width)
        basis = basis.reshape(*basis.shape[:-2], -1, width)
        shape = (self.out_channels, width)
        coefficients = jnp.broadcast_to(coefficients, (x.shape[0], *shape))
        basis = jnp.broadcast_to(basis, (*basis.shape[:-2], *shape))
        return _contract(coefficients, basis) + self.bias[...]


@register("multionet")
class MultiONet(_GridOperator):
    """MultiONet: ``(B, *n, C_in) -> (B, *n, C_out)``, branch–trunk products at many layers.

    Both towers map their input to ``hidden_channels[0]``, then through the remaining
    widths, each layer activated; the inner products of the last ``n_sum_layers`` layer
    pairs, weighted by ``w_l`` and averaged, plus a bias, give the output. The weights
    ``w_l`` start at ``layer_weight_init`` (0 as the reference: the model starts as the zero
    function and the first gradients go to the ``w_l``). Several outputs share the towers
    and have their own ``w_l`` and bias.

    Args:
      in_channels, out_channels: channels of the input and output fields.
      sensors: grid shape at which the branch samples the input, e.g. ``(29, 29)``.
      hidden_channels: the tower widths ``h_0, h_1, …, h_L`` (the same for both towers).
      n_sum_layers: how many of the last layers enter the sum (``None``: all ``L`` after
        the input layer).
      encoder: ``"mlp"`` (flattened sensor values) or ``"cnn"``; with ``"cnn"`` a linear
        layer maps the convolution features to ``latent_channels`` before the branch tower.
      conv_channels, kernel_size, stride, latent_channels: the ``"cnn"`` encoder.
      branch_activation, trunk_activation: the towers' activations (defaults as the DGenNO
        code; see :data:`OPERATOR_ACTIVATIONS`). The encoder uses ``"silu"``.
      layer_weight_init: initial value of every ``w_l``.
      rngs: random streams for the initialisation (``None``: ``nnx.Rngs(0)``).

    >>> import jax.numpy as jnp
    >>> model = MultiONet(1, 1, sensors=(16, 16), hidden_channels=(16, 16, 16))
    >>> model(jnp.ones((3, 16, 16, 1))).shape
    (3, 16, 16, 1)
    """

    def __init__(self, in_channels: int, out_channels: int, sensors: Sequence[int],
                 hidden_channels: Sequence[int] = (100, 100, 100, 100, 100),
                 n_sum_layers: int | None = None, *, encoder: str = "mlp",
                 conv_channels: Sequence[int] = (128, 256), kernel_size: int = 5,
                 stride: int = 2, latent_channels: int = 256, branch_activation: str = "silu_id",
                 trunk_activation: str = "tanh_sin", layer_weight_init: float = 0.0,
                 rngs: nnx.Rngs | None = None) -> None:
        rngs = nnx.Rngs(0) if rngs is None else rngs
        super().__init__(in_channels, out_channels, sensors, encoder, conv_channels,
                         kernel_size, stride, OPERATOR_ACTIVATIONS["silu"], rngs)
        widths = _check_sizes("hidden_channels", hidden_channels)
        if len(widths) < 2:
            raise ValueError(f"hidden_channels needs at least two widths (input layer and one "
                             f"summed layer), got {hidden_channels!r}")
        self.n_sum_layers = len(widths) - 1 if n_sum_layers is None else n_sum_layers
        if not 1 <= self.n_sum_layers < len(widths):
            raise ValueError(f"n_sum_layers must be between 1 and {len(widths) - 1} (the layers "
                             f"after the input layer), got {n_sum_layers!r}")
        code = self.features
        if encoder == "cnn":
            check_positive(latent_channels=latent_channels)
            self.latent = nnx.Linear(self.features, latent_channels, rngs=rngs)
            code = latent_channels
        else:
            self.latent = None
        self.branch = FNN((code, *widths), _activation(branch_activation, "branch_activation"),
                          activate_output=True, rngs=rngs)
        self.trunk = FNN((len(self.sensors), *widths),
                         _activation(trunk_activation, "trunk_activation"),
                         activate_output=True, rngs=rngs)
        self.layer_weights = nnx.Param(jnp.full((self.n_sum_layers, out_channels),
                                                float(layer_weight_init)))
        self.bias = nnx.Param(jnp.zeros((out_channels,)))

    def query(self, x: jax.Array, points: jax.Array) -> jax.Array:
        """``x (B, *n, C_in)``, ``points (N, d)`` or ``(B, N, d)`` → ``(B, N, C_out)``."""
        code = self.encode(x)
        if self.latent is not None:
            code = self.latent(code)
        branch = self.branch.layers(code[:, None, :])[-self.n_sum_layers:]    # (B, 1, h_l)
        trunk = self.trunk.layers(points[..., None, :])[-self.n_sum_layers:]   # (..., N, 1, h_l)
        products = jnp.concatenate([_contract(a, y) for a, y in zip(branch, trunk)], axis=-1)
        return products @ self.layer_weights[...] / self.n_sum_layers + self.bias[...]
