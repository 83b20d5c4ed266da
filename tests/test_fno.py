"""The FNO model: neuraloperator-equal parameter counts, shapes, a real Adam step, arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nopx.losses import relative_lp
from nopx.models import FNO


def n_params(model: nnx.Module) -> int:
    return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("args, expected", [
    ((1, 1, (16, 16), 32), 1_192_801),       # bench config a
    ((10, 1, (12, 12), 32), 701_857),        # b
    ((10, 1, (8, 8, 8), 20), 1_029_741),     # d
    ((1, 1, (16,), 64), 345_665),            # e
    ((1, 1, (16, 16), 64), 4_769_473),       # MODELS.md §1.3 breakdown
])
def test_parameter_count_equals_neuraloperator(args, expected):
    assert n_params(nnx.eval_shape(lambda: FNO(*args))) == expected


def test_parameter_breakdown_of_models_md():
    model = nnx.eval_shape(lambda: FNO(1, 1, (16, 16), 64))
    assert n_params(model.lifting) == 8_768
    assert n_params(model.projection) == 8_449
    block = model.blocks[0]
    assert n_params(block.conv) == 2 * 64 * 64 * 16 * 9 + 64
    assert n_params(block.fno_skip) == 64 * 64
    assert n_params(block.channel_mlp) == 4_192
    assert n_params(block.channel_mlp_skip) == 64
    assert len(model.blocks) == 4 and n_params(model.blocks) == 4 * n_params(block)


@pytest.mark.parametrize("n_modes, grid",
                         [((8,), (32,)), ((6, 6), (16, 12)), ((4, 4, 4), (8, 8, 6))])
def test_forward_shapes(n_modes, grid):
    model = FNO(3, 2, n_modes, hidden_channels=8, n_layers=2)
    out = model(jnp.ones((2, *grid, 3)))
    assert out.shape == (2, *grid, 2) and out.dtype == jnp.float32
    assert bool(jnp.isfinite(out).all())


def test_same_seed_same_model_and_other_resolution_runs():
    a, b = FNO(1, 1, (8, 8), 8), FNO(1, 1, (8, 8), 8)
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 16, 16, 1))
    np.testing.assert_array_equal(a(x), b(x))
    first, second = (block.conv.weight_real[...] for block in a.blocks[:2])
    assert not np.allclose(first, second)                     # layers initialised independently
    assert a(jnp.ones((1, 40, 24, 1))).shape == (1, 40, 24, 1)


def test_one_adam_step_reduces_the_loss():
    model = FNO(1, 1, (8, 8), hidden_channels=8, n_layers=2, rngs=nnx.Rngs(1))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 16, 16, 1))
    y = jnp.sin(x)

    def loss_fn(model):
        return relative_lp(model(x), y)

    @nnx.jit
    def train_step(model, optimizer):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    before = train_step(model, optimizer)
    after = loss_fn(model)
    assert float(after) < float(before)
    assert int(optimizer.step[...]) == 1


def test_domain_padding_keeps_shape_and_changes_the_function():
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 20, 16, 1))
    padded = FNO(1, 1, (6, 6), 8, n_layers=2, domain_padding=0.25)
    plain = FNO(1, 1, (6, 6), 8, n_layers=2)
    assert n_params(padded) == n_params(plain)
    out = padded(x)
    assert out.shape == x.shape
    assert float(jnp.abs(out - plain(x)).max()) > 1e-4
    assert FNO(1, 1, (6, 6), 8, domain_padding=(0.1, 0.0))(x).shape == x.shape


def test_only_the_last_block_skips_the_final_activation():
    model = FNO(1, 1, (4,), 4, n_layers=3)
    assert [block.activate_output for block in model.blocks] == [True, True, False]
    assert FNO(1, 1, (4,), 4, n_layers=1)(jnp.ones((1, 8, 1))).shape == (1, 8, 1)


def test_options_change_the_architecture():
    assert n_params(FNO(1, 1, (8, 8), 8, positional_embedding=None)) == \
        n_params(FNO(1, 1, (8, 8), 8)) - 2 * 16
    tanh = FNO(1, 1, (8, 8), 8, non_linearity="gelu_tanh", norm="instance_norm")
    assert tanh(jnp.ones((1, 16, 16, 1))).shape == (1, 16, 16, 1)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_modes": (8, 8, 8, 8)}, "n_modes"),
    ({"n_modes": 8}, "n_modes"),
    ({"n_modes": (8, -1)}, r"n_modes\[1\]"),
    ({"hidden_channels": 0}, "hidden_channels"),
    ({"n_layers": 0}, "n_layers"),
    ({"in_channels": 1.5}, "in_channels"),
    ({"fno_skip": "gated"}, "fno_skip"),
    ({"channel_mlp_skip": "linearr"}, "channel_mlp_skip"),
    ({"non_linearity": "swish"}, "non_linearity"),
    ({"norm": "batch"}, "norm"),
    ({"positional_embedding": "sine"}, "positional_embedding"),
    ({"domain_padding": -0.1}, "domain_padding"),
    ({"lifting_channel_ratio": 0}, "lifting_channel_ratio"),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    args = {"in_channels": 1, "out_channels": 1, "n_modes": (8, 8), "hidden_channels": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        FNO(**args)


def test_wrong_input_shape_is_a_value_error():
    model = FNO(2, 1, (4, 4), 8)
    with pytest.raises(ValueError, match="2 channels"):
        model(jnp.ones((1, 8, 8, 1)))
    with pytest.raises(ValueError, match="2 spatial axes"):
        model(jnp.ones((1, 8, 2)))
    with pytest.raises(ValueError, match="too few"):
        model(jnp.ones((1, 8, 3, 2)))


def test_batch_chunks_change_neither_outputs_nor_gradients():
    """Chunks (uneven ones too) run separately, yet the function and its gradient are the same."""
    x = jax.random.normal(jax.random.PRNGKey(3), (5, 16, 1))
    y = jnp.cos(x)

    def loss_and_grads(chunks):
        model = FNO(1, 1, (6,), 8, n_layers=2, batch_chunks=chunks, rngs=nnx.Rngs(4))
        loss, grads = nnx.value_and_grad(lambda m: relative_lp(m(x), y))(model)
        n_dots = str(jax.make_jaxpr(model)(x)).count("dot_general")
        return loss, jax.tree.leaves(nnx.state(grads, nnx.Param)), n_dots

    whole, chunked = loss_and_grads(1), loss_and_grads(3)
    np.testing.assert_allclose(chunked[0], whole[0], rtol=1e-6)
    for g_chunked, g_whole in zip(chunked[1], whole[1], strict=True):
        np.testing.assert_allclose(g_chunked, g_whole, rtol=1e-5, atol=1e-7)
    assert chunked[2] == 3 * whole[2]          # three independent chains, not one


def test_auto_batch_chunks_follow_backend_devices_and_cpus(monkeypatch):
    from nopx.layers import batch_chunks

    monkeypatch.setattr(batch_chunks.jax, "default_backend", lambda: "cpu")
    monkeypatch.setattr(batch_chunks.jax, "device_count", lambda: 1)
    monkeypatch.setattr(batch_chunks, "_usable_cpus", lambda: 2)
    assert batch_chunks.resolve_chunks("auto", 16) == 2
    assert batch_chunks.resolve_chunks("auto", 1) == 1            # never more than the samples
    monkeypatch.setattr(batch_chunks, "_usable_cpus", lambda: 16)
    assert batch_chunks.resolve_chunks("auto", 16) == 4
    monkeypatch.setattr(batch_chunks.jax, "device_count", lambda: 8)   # a mesh: batch sharded
    assert batch_chunks.resolve_chunks("auto", 16) == 1
    monkeypatch.setattr(batch_chunks.jax, "device_count", lambda: 1)
    monkeypatch.setattr(batch_chunks.jax, "default_backend", lambda: "gpu")
    assert batch_chunks.resolve_chunks("auto", 16) == 1
    assert batch_chunks.resolve_chunks(3, 16) == 3
    with pytest.raises(ValueError, match="batch_chunks"):
        FNO(1, 1, (4,), 4, batch_chunks=0)
