"""Multigrid patching and MG-TFNO: patch -> stitch identity (2-D, 3-D), context levels, a step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nopx import models
from nopx.models import MGTFNO, MultigridPatching


def first_channel(x: jax.Array) -> jax.Array:
    return x[..., :1]


@pytest.mark.parametrize("grid, levels", [((16, 32), 1), ((32, 16), 2), ((8, 8, 16), 1)])
def test_patch_crop_stitch_is_the_identity(grid, levels):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, *grid, 1))
    wrapper = MultigridPatching(first_channel, levels=levels, padding_fraction=0.1)
    patches = wrapper.patch(x)
    pads = wrapper.pads(grid)
    assert patches.shape == (2 * 2 ** (levels * len(grid)),
                             *[n // 2 ** levels + 2 * p for n, p in zip(grid, pads)], levels + 1)
    cropped = wrapper.crop(patches[..., :1], grid)
    np.testing.assert_array_equal(cropped, wrapper.patch_target(x))
    np.testing.assert_array_equal(wrapper.stitch(cropped), x)
    np.testing.assert_array_equal(wrapper(x), x)
    np.testing.assert_array_equal(wrapper.patches(x), wrapper.patch_target(x))
    wrapper.stitching = False                            # per-patch training; still whole field
    assert wrapper.trains_per_patch
    np.testing.assert_array_equal(wrapper(x), x)


def test_coarse_windows_are_centred_on_their_patch_and_wrap():
    n, levels = 32, 2                                    # 4 patches of 8 cells per axis
    coordinate = jnp.broadcast_to(jnp.arange(n, dtype=jnp.float32)[None, :, None, None],
                                  (1, n, n, 1))
    wrapper = MultigridPatching(first_channel, levels=levels, padding_fraction=0.0)
    patches = wrapper.patch(coordinate)                 # (16, 8, 8, 3)
    for level in (1, 2):
        rows = patches[:, :, 0, level].reshape(4, 4, 8)[:, 0]     # patch row i, level window
        centre = (rows[:, 3] + rows[:, 4]) / 2 % n                # fine coordinate at the middle
        expected = (np.arange(4) * 8 + 3.5 - 2 ** level / 2 + 0.5) % n
        np.testing.assert_allclose(centre, expected, atol=2 ** level / 2)
        assert np.all(np.diff(np.asarray(rows[1])) % n == 2 ** level)    # every 2^level-th cell


def test_grid_must_divide_and_arguments_are_checked():
    wrapper = MultigridPatching(first_channel, levels=2)
    with pytest.raises(ValueError, match="divisible by 16"):
        wrapper.patch(jnp.ones((1, 24, 32, 1)))
    with pytest.raises(ValueError, match="levels"):
        MultigridPatching(first_channel, levels=-1)
    with pytest.raises(ValueError, match="padding_fraction"):
        MultigridPatching(first_channel, padding_fraction=1.5)


@pytest.mark.parametrize("patch_groups, stitching, message", [
    (0, False, "positive integer"), (True, False, "positive integer"),
    (3, False, "must divide the 4 patches"), (8, False, "must divide the 4 patches"),
    (2, True, "stitching: false")])
def test_patch_groups_are_checked_at_build_time(patch_groups, stitching, message):
    with pytest.raises(ValueError, match=message):
        nnx.eval_shape(lambda: MGTFNO(1, 1, (4, 4), 4, n_layers=1, levels=1,
                                      stitching=stitching, patch_groups=patch_groups))


@pytest.mark.parametrize("patch_groups", [None, 1, 2])
def test_each_group_holds_the_same_patch_positions_of_every_field(patch_groups):
    wrapper = MultigridPatching(first_channel, levels=1, stitching=False,
                                patch_groups=patch_groups)
    fields = jnp.arange(3.0)[:, None, None, None] * 10 + jnp.zeros((3, 16, 16, 1))
    position = jnp.tile(jnp.arange(4.0), 3)[:, None, None, None]      # field-major patches
    groups = wrapper.group(wrapper.patch_target(fields) + position)
    n_groups = 4 if patch_groups is None else patch_groups
    assert groups.shape == (n_groups, 12 // n_groups, 8, 8, 1)
    for g, group in enumerate(groups[..., 0, 0, 0]):
        per_field = 4 // n_groups
        expected = [10 * b + g * per_field + k for b in range(3) for k in range(per_field)]
        np.testing.assert_array_equal(group, expected)


def n_params(model: nnx.Module) -> int:
    return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_mgtfno_is_a_jointly_factorized_tfno_on_patches():
    model = nnx.eval_shape(lambda: MGTFNO(1, 1, (16, 16), 32, levels=1, rank=0.05))
    assert model.model.in_channels == (1 + 2) * 2          # field + global grid, 2 levels
    weights = {id(block.conv.weight) for block in model.model.blocks}
    assert len(weights) == 1
    fno = nnx.eval_shape(lambda: models.FNO(1, 1, (16, 16), 32))
    assert n_params(fno) / n_params(model) > 10
