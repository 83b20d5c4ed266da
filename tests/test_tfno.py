"""Factorized spectral weights and the TFNO: dense equivalence, counts, init, a real Adam step."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nopx import models
from nopx.layers import SpectralConv
from nopx.layers.factorized import FactorizedTensor
from nopx.layers.fourier import kept_shape
from nopx.models import FNO, TFNO


def n_params(model: nnx.Module) -> int:
    return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def dense_twin(conv: SpectralConv) -> SpectralConv:
    """A dense SpectralConv holding ``conv``'s reconstructed weight and its bias."""
    twin = SpectralConv(conv.in_channels, conv.out_channels, conv.n_modes, rngs=nnx.Rngs(9))
    weight = conv.weight.to_dense(conv.layer)
    twin.weight_real[...], twin.weight_imag[...] = weight.real, weight.imag
    twin.bias[...] = conv.bias[...]
    return twin


@nnx.jit
def apply_all(convs: list[SpectralConv], x: jax.Array) -> list[jax.Array]:
    return [conv(x) for conv in convs]


def implementations(factorization: str) -> list[str]:
    return ["reconstructed"] + ([] if factorization == "tt" else ["factorized"])


@pytest.mark.parametrize("n_modes, grid", [((6,), (24,)), ((6, 4), (12, 10)),
                                           ((4, 4, 4), (8, 8, 6))])
def test_factorized_layers_equal_their_dense_reconstruction(n_modes, grid):
    """CP, Tucker, TT; per layer and as slice 1 of a joint tensor; both implementations."""
    x = jax.random.normal(jax.random.PRNGKey(0), (2, *grid, 4))
    convs = []
    for factorization in ("cp", "tucker", "tt"):
        joint = FactorizedTensor((3, *kept_shape(n_modes), 4, 4), factorization, 0.4, std=0.5,
                                 rngs=nnx.Rngs(2))
        np.testing.assert_allclose(joint.to_dense(1), joint.to_dense()[1], atol=1e-6)
        for impl in implementations(factorization):
            convs.append(SpectralConv(4, 4, n_modes, factorization=factorization, rank=0.3,
                                      implementation=impl, rngs=nnx.Rngs(1)))
            convs.append(SpectralConv(4, 4, n_modes, weight=joint, layer=1, implementation=impl,
                                      rngs=nnx.Rngs(3)))
    outputs = apply_all([*convs, *map(dense_twin, convs)], x)
    for factorized, dense in zip(outputs[:len(convs)], outputs[len(convs):]):
        np.testing.assert_allclose(factorized, dense, atol=1e-6)


@pytest.mark.parametrize("factorization", ["cp", "tucker", "tt"])
def test_initial_weight_has_the_dense_standard_deviation(factorization):
    variances = [jnp.var(FactorizedTensor((8, 5, 16, 16), factorization, 0.1, std=0.25,
                                          rngs=nnx.Rngs(seed)).to_dense()) for seed in range(6)]
    assert float(jnp.mean(jnp.stack(variances))) ** 0.5 == pytest.approx(0.25, rel=0.15)


@pytest.mark.parametrize("args, expected", [
    ((1, 1, (16, 16), 32), 140_521),         # bench config c: neuraloperator 2.0.0's TFNO
])
def test_parameter_count_equals_neuraloperator(args, expected):
    model = nnx.eval_shape(lambda: TFNO(*args, factorization="tucker", rank=0.1))
    assert n_params(model) == expected
    fno = nnx.eval_shape(lambda: FNO(*args))
    # Only the spectral weights differ: 4 layers of Tucker ranks (9, 5, 18, 18).
    spectral = 4 * 2 * (9 * 5 * 18 * 18 + 16 * 9 + 9 * 5 + 2 * 32 * 18)
    assert n_params(fno) - 4 * 2 * 32 * 32 * 16 * 9 == n_params(model) - spectral


def test_darcy_mgtfno_has_the_documented_count():
    # experiments/darcy_mgtfno.yaml (README's model table): joint Tucker 0.05, 8x8 modes,
    # 1 level, domain coordinates appended (1 + 2 channels per level, 2 levels).
    model = nnx.eval_shape(lambda: models.build(
        "mgtfno", in_channels=1, out_channels=1, n_modes=(8, 8), hidden_channels=32,
        n_layers=4, levels=1, rank=0.05))
    assert n_params(model) == 29_631


def test_joint_factorization_is_one_tensor_for_the_stack():
    model = nnx.eval_shape(lambda: TFNO(1, 1, (16, 16), 32, rank=0.05, joint_factorization=True))
    weights = [block.conv.weight for block in model.blocks]
    assert all(w is weights[0] for w in weights) and weights[0].shape == (4, 16, 9, 32, 32)
    # The rank is a fraction of the whole stack's dense count (4 x 147,456 complex).
    assert n_params(weights[0]) == pytest.approx(0.05 * 2 * 4 * 147_456, rel=0.1)


def test_dense_tfno_is_an_fno_and_options_pass_through():
    dense = nnx.eval_shape(lambda: TFNO(1, 1, (8, 8), 8, factorization="dense"))
    assert n_params(dense) == n_params(nnx.eval_shape(lambda: FNO(1, 1, (8, 8), 8)))
    model = models.build("tfno", in_channels=2, out_channels=1, n_modes=(4, 4), hidden_channels=4,
                         n_layers=1, factorization="cp", rank=0.5, domain_padding=0.25,
                         norm="group_norm", rngs=nnx.Rngs(0))
    assert nnx.jit(lambda m, x: m(x))(model, jnp.ones((1, 8, 8, 2))).shape == (1, 8, 8, 1)


@pytest.mark.parametrize("kwargs, message, checked_before_the_fno", [
    ({"factorization": "svd"}, "factorization", True),
    ({"factorization": "tucker", "rank": 1.5}, "rank", False),
    ({"factorization": "tucker", "rank": (2, 2)}, "Tucker rank", False),
    ({"factorization": "cp", "implementation": "fast"}, "implementation", True),
    ({"factorization": "tt", "implementation": "factorized"}, "TT", False),
])
def test_bad_arguments_raise_value_error(kwargs, message, checked_before_the_fno):
    with pytest.raises(ValueError, match=message):
        SpectralConv(4, 4, (8, 8), **kwargs, rngs=nnx.Rngs(0))
    if checked_before_the_fno:                           # TFNO passes the rest to SpectralConv
        with pytest.raises(ValueError, match=message):
            TFNO(1, 1, (8, 8), 8, **kwargs)


def test_tfno_is_an_fno_built_with_a_factorized_weight():
    """Same constructor, same parameters (paths and values), same sharding rules; the ``fno``
    name takes the factorization too."""
    kwargs = {"n_layers": 2, "rank": 0.3, "joint_factorization": True, "rngs": nnx.Rngs(4)}
    tfno = TFNO(1, 1, (8, 8), 8, **kwargs)
    fno = FNO(1, 1, (8, 8), 8, factorization="tucker", **{**kwargs, "rngs": nnx.Rngs(4)})
    flat = [jax.tree_util.tree_flatten_with_path(nnx.state(m, nnx.Param))[0] for m in (tfno, fno)]
    assert [jax.tree_util.keystr(p) for p, _ in flat[0]] == [jax.tree_util.keystr(p)
                                                              for p, _ in flat[1]]
    for (_, a), (_, b) in zip(*flat):
        np.testing.assert_array_equal(a, b)
    assert TFNO.sharding_rules == FNO.sharding_rules == models.MGTFNO.sharding_rules
    built = nnx.eval_shape(lambda: models.build(
        "fno", in_channels=1, out_channels=1, n_modes=(16, 16), hidden_channels=32,
        factorization="tucker", rank=0.1))
    assert n_params(built) == 140_521


def test_factorized_weights_keep_their_checkpoint_paths_and_sharding_rule():
    """Orbax checkpoints and the sharding regexes name the factors by these paths."""
    from nopx.parallel import path_name

    rules = [re.compile(pattern) for pattern, _ in FNO.sharding_rules]
    cases = [(TFNO(1, 1, (4, 4), 4, n_layers=2, rank=0.5), "blocks/1/conv/weight/real/0"),
             (TFNO(1, 1, (4, 4), 4, n_layers=2, rank=0.5, joint_factorization=True),
              "blocks/0/conv/weight/imag/4"),
             (models.MGTFNO(1, 1, (4, 4), 4, n_layers=2, rank=0.5),
              "model/blocks/0/conv/weight/real/0")]
    for model, expected in cases:
        paths = [path_name(p) for p, _ in
                 jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]]
        assert expected in paths
        factors = [p for p in paths if "/conv/weight/" in p]
        assert factors and all(any(r.search(p) for r in rules) for p in factors)
