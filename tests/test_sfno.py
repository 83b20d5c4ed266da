"""The space-time spectral convolution and the SFNO: reference semantics, shapes, invariances."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nopx.layers import SpaceTimeSpectralConv
from nopx.losses import relative_lp
from nopx.models import SFNO, build
from nopx.models.sfno import output_operator, space_time_encoding

TINY = dict(n_modes=(4, 4, 3), hidden_channels=6, n_layers=2, latent_steps=4)


def torchcfd_conv(conv: SpaceTimeSpectralConv, v: np.ndarray, out_steps: int) -> np.ndarray:
    """torch-cfd's ``SpectralConvT.forward`` in numpy: four corner blocks written into a zero
    spectrum, the bias added per corner, ``irfftn`` onto ``out_steps`` (+ padding) steps."""
    mx, my, mt = conv.n_modes
    weight = np.asarray(conv.weight_real[...]) + 1j * np.asarray(conv.weight_imag[...])
    bias = (None if conv.bias_real is None else
            np.asarray(conv.bias_real[...]) + 1j * np.asarray(conv.bias_imag[...]))
    pad = v.shape[-2] if conv.temporal_padding else 0
    v = np.pad(np.asarray(v, np.float64), [(0, 0)] * 3 + [(pad, 0), (0, 0)])
    batch, nx, ny, nt, _ = v.shape
    v_hat = np.fft.rfftn(v, axes=(1, 2, 3), norm=conv.fft_norm)
    out = np.zeros((batch, nx, ny, nt // 2 + 1, conv.out_channels), complex)
    grid_x, store_x = [slice(0, mx), slice(-mx, None)], [slice(0, mx), slice(mx, 2 * mx)]
    grid_y, store_y = [slice(0, my), slice(-my, None)], [slice(0, my), slice(my, 2 * my)]
    for gx, sx in zip(grid_x, store_x):
        for gy, sy in zip(grid_y, store_y):
            block = v_hat[:, gx, gy, :mt]
            kept = block.shape[3]
            out[:, gx, gy, :mt] = np.einsum("bxyti,xytio->bxyto", block, weight[sx, sy, :kept])
            if bias is not None:
                out[:, gx, gy, :mt] += conv.delta * bias[sx, sy, :kept]
    y = np.fft.irfftn(out, s=(nx, ny, out_steps + pad), axes=(1, 2, 3), norm=conv.fft_norm)
    return y[..., pad:, :]


@pytest.mark.parametrize("padding, bias, steps, out_steps", [
    (False, False, 10, 10), (False, False, 10, 7), (True, True, 5, 13),
    (False, True, 3, 6),           # fewer temporal bins than m_t: the ones there are
    (True, True, 11, 41)])
def test_space_time_conv_matches_torchcfd_semantics(padding, bias, steps, out_steps):
    conv = SpaceTimeSpectralConv(2, 3, (3, 2, 4), bias=bias, delta=0.3,
                                 temporal_padding=padding, rngs=nnx.Rngs(1))
    if bias:
        conv.bias_real[...] = jax.random.normal(jax.random.PRNGKey(5), conv.bias_real.shape)
        conv.bias_imag[...] = jax.random.normal(jax.random.PRNGKey(6), conv.bias_imag.shape)
    v = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 6, steps, 2))
    expected = torchcfd_conv(conv, np.asarray(v), out_steps)
    out = nnx.jit(lambda c, v: c(v, out_steps))(conv, v)     # one compile, not op by op
    np.testing.assert_allclose(out, expected, atol=1e-6 * np.abs(expected).max())


def band_limited(n: int, steps: int = 4) -> np.ndarray:
    """``(1, n, n, steps)`` float32: a few low Fourier modes in space, changing with the slice."""
    grid = np.arange(n) / n
    x, y = np.meshgrid(grid, grid, indexing="ij")
    return np.stack([np.sin(2 * np.pi * x + 0.1 * k) * np.cos(4 * np.pi * y)
                     + 0.5 * np.cos(2 * np.pi * (x + 2 * y) - 0.2 * k)
                     for k in range(steps)], -1)[None].astype(np.float32)


def test_space_time_conv_is_resolution_invariant_in_space():
    conv = SpaceTimeSpectralConv(2, 2, (3, 3, 3), rngs=nnx.Rngs(0))

    def out(n):
        v = band_limited(n)[..., None]
        return conv(jnp.asarray(np.concatenate([v, v ** 2], -1)), 6)       # (1, n, n, 6, 2)

    coarse, fine = out(16), out(32)
    np.testing.assert_allclose(fine[:, ::2, ::2], coarse, atol=1e-5 * np.abs(coarse).max())


def test_time_derivative_is_the_derivative_of_the_temporal_series():
    # fft_norm="forward": the inverse does not divide by the number of steps, so a finer
    # output grid samples the same series; 32x finer central differences approximate d/dt.
    conv = SpaceTimeSpectralConv(1, 2, (2, 2, 3), bias=True, fft_norm="forward",
                                 rngs=nnx.Rngs(0))
    conv.bias_imag[...] = jnp.ones(conv.bias_imag.shape)
    v = jax.random.normal(jax.random.PRNGKey(0), (1, 4, 4, 6, 1))
    y, dy = conv(v, 5, time_derivative=True)
    fine = conv(v, 5 * 32)
    np.testing.assert_allclose(fine[..., ::32, :], y, atol=1e-5)
    slope = (jnp.roll(fine, -1, axis=-2) - jnp.roll(fine, 1, axis=-2)) * 32 / 2   # periodic
    np.testing.assert_allclose(slope[..., ::32, :], dy, atol=2e-3 * np.abs(dy).max())


def test_space_time_conv_rejects_bad_arguments():
    with pytest.raises(ValueError, match="temporal"):
        SpaceTimeSpectralConv(1, 1, (4,), rngs=nnx.Rngs(0))
    conv = SpaceTimeSpectralConv(2, 1, (4, 4, 3), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="2 channels"):
        conv(jnp.ones((1, 8, 8, 5, 3)))
    with pytest.raises(ValueError, match="too few"):
        conv(jnp.ones((1, 6, 8, 5, 2)))                  # 6 points < 2·4 modes


def test_positional_encoding_channels():
    pe = space_time_encoding((4, 6, 3), 7, beta=0.5, grid="periodic")
    assert pe.shape == (4, 6, 3, 7)
    np.testing.assert_allclose(pe[:, 0, 0, 0], [0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(pe[2, :, 1, 1], np.arange(6) / 6, atol=1e-7)
    t = np.array([0.01, 0.02, 0.03])
    np.testing.assert_allclose(pe[1, 2, :, 2], t, atol=1e-7)
    np.testing.assert_allclose(pe[0, 0, :, 4], np.exp(0.5 * t) * np.cos(2 * np.pi * t), atol=1e-6)
    np.testing.assert_allclose(pe[0, 0, :, 6], np.exp(0.5 * t) * np.cos(4 * np.pi * t), atol=1e-6)
    endpoint = space_time_encoding((5, 5, 2), 4, beta=0.0, grid="endpoint")
    np.testing.assert_allclose(endpoint[:, 0, 0, 0], np.linspace(0, 1, 5), atol=1e-7)


def test_shapes_and_arbitrary_output_steps():
    model = build("sfno", in_channels=4, out_channels=5, **TINY, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 12, 4))
    apply = nnx.jit(lambda m, v, steps: m(v, steps), static_argnums=2)
    assert apply(model, x, None).shape == (2, 16, 12, 5)
    assert apply(model, x[..., :3], 17).shape == (2, 16, 12, 17)         # another T_in too
    with pytest.raises(ValueError, match="time slices"):
        model(x[..., 0])


def test_resolution_invariance_in_space_on_band_limited_input():
    model = SFNO(4, 5, **TINY, activation="gelu")
    increment = nnx.jit(lambda m, v: m(v) - v[..., -1:])     # the network's own contribution
    out = {n: increment(model, jnp.asarray(band_limited(n))) for n in (32, 64, 128)}

    def gap(coarse, fine):
        return float(jnp.abs(out[fine][:, ::fine // coarse, ::fine // coarse] - out[coarse]).max()
                     / jnp.abs(out[coarse]).max())

    # Not exact (pointwise non-linearities alias, the coordinate ramps are not band-limited,
    # GroupNorm statistics are sums over the grid), but first order in the grid spacing.
    assert gap(64, 128) < 2e-2
    assert gap(64, 128) < 0.6 * gap(32, 64)


def test_output_operator_is_the_last_layer():
    model = SFNO(4, 3, **TINY)
    x = jax.random.normal(jax.random.PRNGKey(1), (1, 16, 16, 4))

    @nnx.jit
    def both(m, v):
        latent = m.trunk(v)
        return m(v), output_operator(m.output_conv, latent, v, 3), latent

    full, parts, latent = both(model, x)
    assert latent.shape == (1, 16, 16, 4, 1)                            # latent_steps = 4
    np.testing.assert_allclose(parts, full, atol=1e-6)
    # The prediction is the change from the last input slice: a zero output layer returns it.
    for name in ("weight_real", "weight_imag"):
        weight = getattr(model.output_conv, name)
        weight[...] = jnp.zeros_like(weight[...])
    np.testing.assert_allclose(both(model, x)[0], jnp.repeat(x[..., -1:], 3, axis=-1), atol=1e-6)


def test_one_adam_step_lowers_the_loss_and_the_last_layer_is_addressable():
    model = SFNO(4, 3, **TINY)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 4))
    y = x[..., -1:] + 0.1 * jax.random.normal(jax.random.PRNGKey(1), (2, 16, 16, 3))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    def loss(m):
        return relative_lp(m(x), y)

    @nnx.jit
    def step(m, opt):
        value, grads = nnx.value_and_grad(loss)(m)
        opt.update(m, grads)
        return value                                  # the loss before the update

    before = step(model, optimizer)
    assert float(step(model, optimizer)) < float(before)

    # The refiner's freeze: a path filter selects the output layer, nnx.DiffState
    # differentiates with respect to it alone.
    last = nnx.All(nnx.Param, nnx.PathContains("output_conv"))
    expected = {("output_conv", name) for name in
                ("weight_real", "weight_imag", "bias_real", "bias_imag")}
    assert {path for path, _ in nnx.to_flat_state(nnx.state(model, last))} == expected
    grads = nnx.eval_shape(lambda m: nnx.grad(loss, argnums=nnx.DiffState(0, last))(m), model)
    assert {path for path, _ in nnx.to_flat_state(grads)} == expected
