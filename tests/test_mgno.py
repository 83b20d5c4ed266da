"""MgNO: the reference parameter count, V-cycle shapes at odd sizes, boundary modes, a step."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from nopx.models import MgNO
from nopx.models.mgno import MgConv


def n_params(model: nnx.Module) -> int:
    return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_darcy_configuration_has_the_reference_count():
    # MODELS.md §3.3: C_u = 24, 5 layers, levels [[1,0]]*5 + [[2,0]], kernels (3,4,3,3,4).
    model = nnx.eval_shape(lambda: MgNO(1, 1, 24, 5, prolongation_kernels=(3, 4, 3, 3, 4)))
    assert n_params(model) == 678_093
    conv = model.mg_convs[1]                            # C_f = C_u = 24
    assert n_params(conv) == 9 * 24 ** 2 * (1 + 2 * 6 + 2 * 5) + 24 ** 2 * (9 + 16 + 9 + 9 + 16)


@pytest.mark.parametrize("grid, padding_mode", [((21,), "reflect"), ((9, 8, 10), "zeros")])
def test_v_cycle_keeps_any_grid_size(grid, padding_mode):
    conv = MgConv(2, 3, levels=[[1, 1], [2, 0], [1, 0]], dim=len(grid),
                  padding_mode=padding_mode, prolongation_kernels=(3, 4), rngs=nnx.Rngs(0))
    out = nnx.jit(lambda c, x: c(x))(conv, jnp.ones((2, *grid, 2)))
    assert out.shape == (2, *grid, 3) and bool(jnp.isfinite(out).all())


def test_periodic_padding_makes_the_layer_translation_equivariant():
    conv = MgConv(1, 2, levels=[[1, 0], [1, 0]], padding_mode="periodic",
                  prolongation_kernels=(3,), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 16, 16, 1))
    shift = nnx.jit(lambda c, x: c(x))
    # Shifts by the coarse stride commute with a periodic V-cycle.
    assert jnp.allclose(shift(conv, jnp.roll(x, 2, axis=1)), jnp.roll(shift(conv, x), 2, axis=1),
                        atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"levels": [[0, 0]]}, "levels"),
    ({"levels": [[1, 0], [1]]}, "levels"),
    ({"padding_mode": "dirichlet"}, "padding_mode"),
    ({"prolongation_kernels": (4,)}, "prolongation_kernels"),
    ({"hidden_channels": 0}, "hidden_channels"),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MgNO(1, 1, **{"hidden_channels": 4, "n_layers": 1, **kwargs})


def test_too_small_a_grid_is_a_value_error():
    conv = MgConv(1, 2, levels=[[1, 0]] * 3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="fewer levels"):
        conv(jnp.ones((1, 4, 4, 1)))                         # 3 levels: 4 -> 1 cell
