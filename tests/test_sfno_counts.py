"""Pinned parameter counts of the Navier–Stokes models (complex weights counted as 2 reals).

Shapes only (``nnx.eval_shape``): nothing is initialised or run.
"""

import jax
from flax import nnx

from nopx.layers import SpaceTimeSpectralConv
from nopx.models import FNO, SFNO


def n_params(module) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(module, nnx.Param)))


def test_sfno_main_configuration_count_and_breakdown():
    # MODELS.md §4.2 main run: modes (12, 12, 5), width 20, 4 layers, expansion 4,
    # 10 latent steps, T_in = 10. Arithmetic in models/sfno.py's docstring.
    model = nnx.eval_shape(lambda: SFNO(10, 40))
    assert n_params(model) == 9_242_461
    spectral = 2 * (24 * 24 * 5) * 20 * 20
    assert n_params(model.lift_conv) == n_params(model.blocks[0].conv) == spectral == 2_304_000
    lifting = (model.norm, model.lift, model.lift_mlp)
    assert [n_params(part) for part in lifting] == [40, 420, 3_300]
    assert n_params(model.blocks[0].mlp) + n_params(model.blocks[0].skip) == 3_300 + 420
    assert n_params(model.reduction) == 21
    assert n_params(model.output_conv) == 11_520
    # Independent of the input length, latent length and output length.
    assert n_params(nnx.eval_shape(lambda: SFNO(7, 3, latent_steps=6))) == 9_242_461


def test_spectral_refiner_trainable_count():
    # The reference refines at 256² with modes (64, 64, 6): weights and bias, 2·128·128·6 each.
    conv = nnx.eval_shape(lambda: SpaceTimeSpectralConv(1, 1, (64, 64, 6), bias=True,
                                                        rngs=nnx.Rngs(0)))
    assert n_params(conv) == 393_216


# The FNO paper's Navier–Stokes counts (arXiv v1 Table 3) are those of the 2020 code:
# real/imag stored as a trailing axis of 2 (both counted), per-corner weights, a
# BatchNorm(20) after every Fourier layer (4 x 40 = 160 parameters), fc0 = Linear(T_in + d
# -> 20), fc1 = Linear(20 -> 128), fc2 = Linear(128 -> 1), and - for FNO-2D - modes = 8
# (not the 12 of the later scripts):
#   FNO-2D: 12*20+20 + 4*(2*20*20*8*8*2 + 420 + 40) + 20*128+128 + 128+1
#         = 260 + 4*102,860 + 2,817 = 414,517
#   FNO-3D: 13*20+20 + 4*(4*20*20*8*8*8*2 + 420 + 40) + 2,817
#         = 280 + 4*1,638,860 + 2,817 = 6,558,537
# nopx's FNO reproduces the architecture without the BatchNorm (which later versions of the
# original code dropped): per-sign modes m map to n_modes = 2m on the full axes and 2m - 1 on
# the last (rfft) axis (m bins, no extra one); the spectral conv's bias plus the bias-free
# linear skip are the original 1x1 W with bias (20 + 400 = 420).
ORIGINAL = dict(lifting_channel_ratio=None,          # fc0: one linear map
                projection_channel_ratio=6.4,        # fc1 width 6.4 * 20 = 128
                channel_mlp_expansion=None, fno_skip="linear")


def test_fno2d_original_architecture_count():
    model = nnx.eval_shape(lambda: FNO(10, 1, (16, 15), 20, **ORIGINAL))
    assert n_params(model.lifting) == 12 * 20 + 20
    assert n_params(model.projection) == 20 * 128 + 128 + 128 + 1
    assert n_params(model.blocks[0]) == 2 * 20 * 20 * 8 * 8 * 2 + 420
    assert n_params(model) == 414_517 - 4 * 40 == 414_357
    # modes = 12 (the later fourier_2d_time.py): 926,357 complex-as-2 (PyTorch's numel,
    # counting a complex entry once, prints 465,557 for it).
    assert n_params(nnx.eval_shape(lambda: FNO(10, 1, (24, 23), 20, **ORIGINAL))) == 926_357


def test_fno3d_original_architecture_count():
    model = nnx.eval_shape(lambda: FNO(10, 1, (16, 16, 15), 20, **ORIGINAL))
    assert n_params(model.lifting) == 13 * 20 + 20
    assert n_params(model) == 6_558_537 - 4 * 40 == 6_558_377
