"""Pointwise layers, skips, grid embedding, padding, norms, activations and the FNO block."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nopx.layers import (ChannelMLP, FNOBlock, SoftGating, append_grid, channel_linear,
                         domain_pads, gelu, get_activation, grid_coordinates, make_norm,
                         make_skip, pad_domain, unpad_domain)


def test_exact_gelu_matches_erf_definition_and_its_gradient():
    x = jnp.linspace(-8.0, 8.0, 2001)
    reference = jax.nn.gelu(x, approximate=False)
    np.testing.assert_allclose(gelu(x), reference, atol=1e-6)
    slope = jax.vmap(jax.grad(gelu))(x)
    np.testing.assert_allclose(slope, jax.vmap(jax.grad(lambda v: jax.nn.gelu(v, False)))(x),
                               atol=1e-6)
    # Second derivative through the custom rule: phi(x) (2 - x^2).
    curvature = jax.vmap(jax.grad(jax.grad(gelu)))(x)
    pdf = np.exp(-0.5 * x ** 2) / np.sqrt(2 * np.pi)
    np.testing.assert_allclose(curvature, pdf * (2 - x ** 2), atol=1e-5)


def test_activation_names():
    assert get_activation("gelu") is gelu
    x = jnp.array([1.0])
    assert get_activation("gelu_tanh")(x) == jax.nn.gelu(x, approximate=True)
    with pytest.raises(ValueError, match="non_linearity"):
        get_activation("swish")


def test_channel_linear_has_torch_init_and_acts_on_last_axis():
    layer = channel_linear(64, 32, rngs=nnx.Rngs(0))
    bound = 1 / 8
    kernel = np.asarray(layer.kernel[...])
    assert kernel.shape == (64, 32) and np.abs(kernel).max() <= bound
    assert abs(kernel.std() - bound / np.sqrt(3)) < 0.01 * bound
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 7, 64))
    np.testing.assert_allclose(layer(x), x @ kernel + layer.bias[...], atol=1e-5)
    assert channel_linear(4, 4, use_bias=False, rngs=nnx.Rngs(0)).bias is None


def test_channel_mlp_is_linear_activation_linear():
    mlp = ChannelMLP(3, 2, hidden_channels=5, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 6, 3))
    first, second = mlp.layers
    np.testing.assert_allclose(mlp(x), second(gelu(first(x))), atol=1e-6)
    assert len(ChannelMLP(3, 2, 5, n_layers=3, rngs=nnx.Rngs(0)).layers) == 3


def test_skips():
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 8, 4))
    gate = make_skip("soft-gating", 4, 4, rngs=nnx.Rngs(0))
    assert isinstance(gate, SoftGating) and not hasattr(gate, "bias")
    np.testing.assert_array_equal(gate(x), x)
    gate.weight[...] = jnp.arange(4.0)
    np.testing.assert_allclose(gate(x), x * jnp.arange(4.0))
    linear = make_skip("linear", 4, 6, rngs=nnx.Rngs(0))
    assert linear(x).shape == (2, 8, 6) and linear.bias is None
    assert make_skip("identity", 4, 4, rngs=nnx.Rngs(0))(x) is x
    assert make_skip(None, 4, 4, rngs=nnx.Rngs(0)) is None
    with pytest.raises(ValueError, match="channel_mlp_skip"):
        make_skip("gated", 4, 4, rngs=nnx.Rngs(0), name="channel_mlp_skip")
    with pytest.raises(ValueError, match="as many input as output"):
        make_skip("soft-gating", 4, 6, rngs=nnx.Rngs(0))


def test_grid_embedding_is_periodic_grid_without_endpoint_at_every_resolution():
    for n in (4, 7):
        np.testing.assert_allclose(grid_coordinates((n,))[:, 0], np.linspace(0, 1, n + 1)[:-1],
                                   atol=1e-7)
    x = jnp.full((2, 4, 3, 1), 5.0)
    y = append_grid(x)
    assert y.shape == (2, 4, 3, 3)
    np.testing.assert_array_equal(y[..., 0], 5.0)
    np.testing.assert_allclose(y[1, :, 2, 1], [0, 0.25, 0.5, 0.75])    # coordinate along axis 0
    np.testing.assert_allclose(y[1, 3, :, 2], [0, 1 / 3, 2 / 3], atol=1e-7)


def test_domain_padding_round_trip():
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 20, 12, 3))
    padded, pads = pad_domain(x, 0.125)
    assert pads == (2, 2) and padded.shape == (2, 24, 16, 3)      # round(2.5) = 2, round(1.5) = 2
    assert float(jnp.abs(padded[:, :2]).max()) == 0.0
    assert float(jnp.abs(padded[:, -2:]).max()) == 0.0
    np.testing.assert_array_equal(unpad_domain(padded, pads), x)
    assert domain_pads((10, 40), (0.1, 0.0)) == (1, 0)
    with pytest.raises(ValueError, match="domain_padding"):
        domain_pads((10, 10), (0.1,))


def test_norms():
    x = jax.random.normal(jax.random.PRNGKey(4), (2, 6, 5, 3)) * 3 + 1
    instance = make_norm("instance_norm", 3, rngs=nnx.Rngs(0))(x)
    np.testing.assert_allclose(instance.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(instance.std(axis=(1, 2)), 1, atol=1e-3)
    group = make_norm("group_norm", 3, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(group(x).mean(axis=(1, 2, 3)), 0, atol=1e-5)
    assert group.scale.shape == (3,)
    assert make_norm(None, 3, rngs=nnx.Rngs(0)) is None
    with pytest.raises(ValueError, match="norm"):
        make_norm("batch_norm", 3, rngs=nnx.Rngs(0))


def test_fno_block_follows_neuraloperator_post_activation_order():
    block = FNOBlock(4, 4, (4, 4), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(5), (2, 8, 8, 4))
    h = gelu(block.conv(x) + block.fno_skip(x))
    expected = gelu(block.channel_mlp(h) + block.channel_mlp_skip(x))
    np.testing.assert_allclose(block(x), expected, atol=1e-5)
    last = FNOBlock(4, 4, (4, 4), activate_output=False, rngs=nnx.Rngs(0))
    h = last.conv(x) + last.fno_skip(x)
    np.testing.assert_allclose(last(x), last.channel_mlp(h) + last.channel_mlp_skip(x), atol=1e-5)
    assert block.channel_mlp.layers[0].kernel.shape == (4, 2)     # round(0.5 · 4) hidden


def test_fno_block_options():
    x = jnp.ones((1, 8, 8, 4))
    plain = FNOBlock(4, 4, (4, 4), channel_mlp_expansion=None, fno_skip="identity",
                     norm="group_norm", rngs=nnx.Rngs(0))
    assert plain.channel_mlp is None and plain(x).shape == x.shape
    with pytest.raises(ValueError, match="channel_mlp_expansion"):
        FNOBlock(4, 4, (4, 4), channel_mlp_expansion=0, rngs=nnx.Rngs(0))
