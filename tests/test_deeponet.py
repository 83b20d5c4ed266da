"""DeepONet and MultiONet: reference parameter counts, outputs, queries, training, the CLI."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import yaml
from flax import nnx

from helpers import run_nopx
from nopx.models import DeepONet, MultiONet


def n_params(tree) -> int:
    return sum(p.size for p in jax.tree.leaves(nnx.state(tree, nnx.Param)))


def test_parameter_counts_equal_the_reference_notebooks():
    # DGNO Darcy baseline (Deep-Neural-Operators-for-PDEs, DeepONetCartesian_DarcyFlowPWC).
    deeponet = nnx.eval_shape(lambda: DeepONet(
        1, 1, (29, 29), n_basis=128, branch_layers=(128,), trunk_layers=(128, 128, 128),
        encoder="cnn", conv_channels=(64, 128)))
    assert n_params(deeponet) == 682_753
    # DGenNO Darcy MultiONet: encoder 2,461,440 + operator 106,805.
    multionet = nnx.eval_shape(lambda: MultiONet(1, 1, (29, 29), encoder="cnn"))
    assert n_params(multionet) == 2_568_245
    assert n_params(multionet.encoder) + n_params(multionet.latent) == 2_461_440


@pytest.mark.parametrize("multi_output, stacked", [
    ("split_branch", False), ("split_trunk", True), ("split_both", False)])
def test_deeponet_outputs_and_queries(multi_output, stacked):
    model = DeepONet(2, 2, (12, 12), n_basis=8, branch_layers=(16,), trunk_layers=(16,),
                     stacked=stacked, multi_output=multi_output)
    x = jax.random.normal(jax.random.key(0), (3, 12, 12, 2))
    out = model(x)
    assert out.shape == (3, 12, 12, 2)
    points = jnp.array([[0.25, 0.5], [0.0, 0.75]])              # grid points (3, 6), (0, 9)
    np.testing.assert_allclose(model.query(x, points), out[:, [3, 0], [6, 9]], atol=1e-6)
    per_sample = jnp.broadcast_to(points, (3, 2, 2))
    np.testing.assert_allclose(model.query(x, per_sample), model.query(x, points), atol=1e-6)


def test_stacked_has_one_branch_per_coefficient():
    kwargs = {"n_basis": 8, "branch_layers": (16,), "trunk_layers": (16,)}
    unstacked = nnx.eval_shape(lambda: DeepONet(1, 1, (10,), **kwargs))
    stacked = nnx.eval_shape(lambda: DeepONet(1, 1, (10,), stacked=True, **kwargs))
    assert n_params(unstacked.branch) == (10 * 16 + 16) + (16 * 8 + 8)
    assert n_params(stacked.branch) == 8 * ((10 * 16 + 16) + (16 + 1))


def test_multionet_starts_at_zero_and_any_grid_is_resampled():
    x = jax.random.normal(jax.random.key(1), (2, 16, 16, 1))
    model = MultiONet(1, 2, (16, 16), hidden_channels=(16, 16, 16))
    assert float(jnp.abs(model(x)).max()) == 0.0             # w_l = b = 0 as the reference
    model = MultiONet(1, 2, (16, 16), hidden_channels=(16, 16, 16), n_sum_layers=1,
                      layer_weight_init=1.0)
    assert float(jnp.abs(model(x)).max()) > 0.0
    assert model(jax.image.resize(x, (2, 24, 20, 1), "linear")).shape == (2, 24, 20, 2)


@pytest.mark.parametrize("make", [
    lambda: DeepONet(1, 1, (16, 16), n_basis=16, branch_layers=(32,), trunk_layers=(32,)),
    lambda: MultiONet(1, 1, (16, 16), hidden_channels=(16, 16, 16), layer_weight_init=1.0)],
    ids=["deeponet", "multionet"])
def test_one_adam_step_reduces_the_loss(make):
    model = make()
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    x = jax.random.normal(jax.random.key(2), (4, 16, 16, 1))
    y = jnp.sin(x)

    def loss_fn(model):
        return jnp.mean((model(x) - y) ** 2)

    @nnx.jit
    def train_step(model, optimizer):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss, loss_fn(model)

    before, after = train_step(model, optimizer)
    assert float(after) < float(before)


@pytest.mark.parametrize("make, message", [
    (lambda: DeepONet(1, 1, (8, 8), multi_output="independent"), "multi_output"),
    (lambda: DeepONet(1, 3, (8, 8), n_basis=8, multi_output="split_both"), "multiple of 3"),
    (lambda: DeepONet(1, 1, (8, 8), encoder="cnn"), "do not fit"),
    (lambda: DeepONet(1, 1, (8, 8, 8, 8)), "sensors"),
    (lambda: DeepONet(1, 1, (8, 8), non_linearity="swish"), "non_linearity"),
    (lambda: MultiONet(1, 1, (8, 8), hidden_channels=(16,)), "at least two"),
    (lambda: MultiONet(1, 1, (8, 8), hidden_channels=(16, 16), n_sum_layers=2), "n_sum_layers"),
])
def test_bad_arguments_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        nnx.eval_shape(make)


def test_wrong_input_is_a_value_error():
    with pytest.raises(ValueError, match="2 channels"):
        DeepONet(2, 1, (8, 8), n_basis=4, branch_layers=(), trunk_layers=())(jnp.ones((1, 8, 8, 1)))


def _train(tmp_path, data, name: str, model: dict, devices: int) -> tuple[list[dict], dict]:
    """``nopx train`` for two epochs: the per-epoch training events and the last test one."""
    run_dir = tmp_path / "runs" / name
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump({
        "name": name, "model": model, "optim": {"lr": 1e-3},
        "data": {"path": str(data), "n_train": 64, "n_test": 16},
        "train": {"epochs": 2, "batch_size": 8, "log_every": 8, "run_dir": str(run_dir)}}))
    result = run_nopx("train", "--config", str(config), "--set", f"mesh.data={devices}",
                      env={"JAX_NUM_CPU_DEVICES": "8"})
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return ([e for e in events if "train/loss" in e],
            [e for e in events if "test/rel_l2" in e][-1])


DEEPONET = {"name": "deeponet", "sensors": [32, 32], "n_basis": 32,
            "branch_layers": [64], "trunk_layers": [64, 64]}


def test_cli_trains_both(tmp_path, darcy_small):
    one, _ = _train(tmp_path, darcy_small, "deeponet1", DEEPONET, 1)
    assert one[-1]["train/loss"] < one[0]["train/loss"]
    multionet = {"name": "multionet", "sensors": [32, 32], "hidden_channels": [32, 32, 32],
                 "encoder": "cnn", "conv_channels": [8, 16], "latent_channels": 32}
    events, test = _train(tmp_path, darcy_small, "multionet", multionet, 1)
    assert events[-1]["train/loss"] < events[0]["train/loss"]
    assert 0 < test["test/rel_l2"] < 1


@pytest.mark.slow
def test_cli_eight_devices_match_one(tmp_path, darcy_small):
    one, one_test = _train(tmp_path, darcy_small, "deeponet1", DEEPONET, 1)
    eight, eight_test = _train(tmp_path, darcy_small, "deeponet8", DEEPONET, 8)
    assert eight[-1]["train/loss"] == pytest.approx(one[-1]["train/loss"], rel=1e-4)
    assert eight_test["test/rel_l2"] == pytest.approx(one_test["test/rel_l2"], rel=1e-4)
