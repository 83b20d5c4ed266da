"""Per-patch training of MG-TFNO (``stitching: false``): the loss the train step computes,
the tasks it refuses, and real ``nopx train`` runs on the Darcy fixture that evaluate the
whole field.
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import yaml
from flax import nnx

from helpers import run_nopx
from nopx.config import DataConfig, TimeConfig
from nopx.errors import UserError
from nopx.losses import relative_lp
from nopx.models import MGTFNO
from nopx.training import tasks
from nopx.training.data import Normalizer
from nopx.training.steps import Steps


def mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.mean((pred - target) ** 2)


def _steps(model: nnx.Module, loss) -> tuple[Steps, nnx.State, optax.OptState]:
    """Steps with non-trivial normalisers (patches must decode like fields)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-3)
    steps = Steps(graphdef, rest, tx, loss, Normalizer(np.array([0.5]), np.array([2.0])),
                  Normalizer(np.array([-1.0]), np.array([3.0])))
    return steps, params, tx.init(params)


def test_per_patch_loss_is_the_loss_of_the_patched_whole_field():
    """The patches tile the field without overlap, so a per-cell mean (MSE) over the
    patches is the whole field's; a relative L2 becomes the mean over patches of each
    patch's relative error — not the field's — which shows the step really is per patch."""
    model = MGTFNO(1, 1, (4, 4), 4, n_layers=1, levels=1, stitching=False, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 1))
    y = jnp.sin(3 * x) + x
    steps, params, opt_state = _steps(model, relative_lp)
    whole = steps.predict(params, x)
    assert whole.shape == y.shape                             # predictions: the stitched field

    mse_steps, _, _ = _steps(model, mse)
    loss, _ = jax.jit(mse_steps._loss_and_grads)(params, x, y)
    assert float(loss) == pytest.approx(float(mse(whole, y)), rel=1e-5)

    _, _, loss, finite = steps.train_step(params, opt_state, x, y)     # donates params
    assert bool(finite.all())
    per_patch = relative_lp(model.patch_target(whole), model.patch_target(y))
    assert float(loss) == pytest.approx(float(per_patch), rel=1e-5)
    assert abs(float(loss) - float(relative_lp(whole, y))) > 1e-3


def test_stitched_model_trains_on_the_whole_field():
    model = MGTFNO(1, 1, (4, 4), 4, n_layers=1, levels=1, rngs=nnx.Rngs(0))
    steps, params, _ = _steps(model, relative_lp)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 1))
    loss, _ = jax.jit(steps._loss_and_grads)(params, x, x ** 2)
    assert float(loss) == pytest.approx(float(relative_lp(steps.predict(params, x), x ** 2)),
                                        rel=1e-5)


def _relative_error(a, b) -> float:
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.parametrize("levels, grid, groups", [(1, 16, 4), (1, 16, 2), (2, 32, 16)])
def test_patch_groups_give_the_loss_and_gradient_of_all_patches_at_once(levels, grid, groups):
    """A step over its patches in groups, one after another, computes the loss and gradient
    of the step over all of them at once, up to float32 rounding."""
    def loss_and_grads(patch_groups: int):
        model = MGTFNO(1, 1, (4, 4), 4, n_layers=2, levels=levels, stitching=False,
                       patch_groups=patch_groups, rngs=nnx.Rngs(0))
        steps, params, _ = _steps(model, relative_lp)
        return jax.jit(steps._loss_and_grads)(params, x, jnp.sin(3 * x) + x)

    x = jax.random.normal(jax.random.PRNGKey(0), (3, grid, grid, 1))
    loss, grads = loss_and_grads(groups)
    reference, reference_grads = loss_and_grads(1)
    assert _relative_error(loss, reference) < 1e-5
    for grad, expected in zip(jax.tree.leaves(grads), jax.tree.leaves(reference_grads),
                              strict=True):
        assert _relative_error(grad, expected) < 1e-5


def _train_step_temp_bytes(**model_kwargs) -> int:
    """Temporary memory of the compiled train step on 8 fields of 64² (no data needed)."""
    model = MGTFNO(1, 1, (8, 8), 16, n_layers=2, rngs=nnx.Rngs(0), **model_kwargs)
    steps, params, opt_state = _steps(model, relative_lp)
    x = jax.ShapeDtypeStruct((8, 64, 64, 1), jnp.float32)
    compiled = steps.train_step.lower(params, opt_state, x, x).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_patch_groups_divide_the_activation_memory_of_a_step():
    """4 patches in 4 groups: a step holds one patch per field at a time, well under half
    the memory of a stitched step (all 4 at once would hold as much as a stitched one)."""
    stitched = _train_step_temp_bytes(levels=1)
    grouped = _train_step_temp_bytes(levels=1, stitching=False)
    assert grouped < stitched / 2


@pytest.mark.parametrize("time, with_time, refused", [
    (None, False, False),
    (TimeConfig(mode="direct"), False, False),
    (TimeConfig(mode="all2all"), False, False),            # the lead time is an input channel
    (TimeConfig(mode="all2all"), True, True),              # model(x, t): no per-patch form
    (TimeConfig(mode="rollout"), False, True),             # feeds whole fields back
    (TimeConfig(mode="spacetime"), False, True),
])
def test_per_patch_training_is_refused_where_the_task_needs_whole_fields(time, with_time,
                                                                         refused):
    per_patch = nnx.eval_shape(lambda: MGTFNO(1, 1, (4, 4), 4, n_layers=1, stitching=False))
    stitched = nnx.eval_shape(lambda: MGTFNO(1, 1, (4, 4), 4, n_layers=1))
    fields = ("w", "w") if time is not None else ("a", "u")
    data = DataConfig(path="d.h5", inputs=fields[:1], targets=fields[1:], time=time)
    tasks.check_per_patch(stitched, data, with_time, where="cfg.yaml")
    if not refused:
        tasks.check_per_patch(per_patch, data, with_time, where="cfg.yaml")
        return
    with pytest.raises(UserError, match=r"cfg.yaml: model.stitching: false .* data.time.mode"):
        tasks.check_per_patch(per_patch, data, with_time, where="cfg.yaml")


def _config(tmp_path: pathlib.Path, path: pathlib.Path, name: str, **sections) -> pathlib.Path:
    cfg = {"name": name,
           "data": {"path": str(path), "n_train": 32, "n_test": 16},
           "model": {"name": "mgtfno", "n_modes": [8, 8], "hidden_channels": 8, "n_layers": 1,
                     "levels": 1, "rank": 0.3, "stitching": False},
           "optim": {"lr": 3e-3},
           "train": {"epochs": 2, "batch_size": 8, "log_every": 4,
                     "run_dir": str(tmp_path / "runs" / name)}}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _events(run_dir: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow   # ~30 s; the per-patch step itself is tested in-process above
def test_one_per_patch_step_through_the_cli(tmp_path, darcy_small):
    """One step (8 of 9 training samples), validated and tested on whole fields."""
    config = _config(tmp_path, darcy_small, "one", data={"n_train": 9, "n_val": 1},
                     train={"epochs": 1})
    result = run_nopx("train", "--config", str(config))
    assert result.returncode == 0, result.stderr
    epoch, test = _events(tmp_path / "runs" / "one")
    assert epoch["step"] == 1 and np.isfinite(epoch["train/loss"])
    assert np.isfinite(epoch["val/rel_l2"]) and 0 < test["test/rel_l2"] < 10


@pytest.mark.slow
def test_per_patch_run_trains_evaluates_whole_fields_and_shards(tmp_path, darcy_small):
    """Two epochs: the per-patch loss falls, the test metrics are the whole field's (``nopx
    eval`` of the same checkpoint agrees), and a 2-device data mesh gives the same run."""
    results = {}
    for devices in (1, 2):
        name = f"short{devices}"
        config = _config(tmp_path, darcy_small, name, mesh={"data": devices})
        result = run_nopx("train", "--config", str(config),
                          env={"JAX_NUM_CPU_DEVICES": str(devices)})
        assert result.returncode == 0, result.stderr
        assert f"x{devices} (mesh data {devices}" in result.stderr
        results[devices] = _events(tmp_path / "runs" / name)
    epochs, test = results[1][:-1], results[1][-1]
    assert epochs[-1]["train/loss"] < epochs[0]["train/loss"]
    assert 0 < test["test/rel_l2"] < 1.5
    for one, two in zip(results[1], results[2], strict=True):
        for key in ("train/loss", "val/rel_l2", "test/rel_l2"):
            if key in one:
                assert two[key] == pytest.approx(one[key], rel=1e-4), key
    result = run_nopx("eval", "--run", str(tmp_path / "runs" / "short1"))
    assert result.returncode == 0, result.stderr
    stored = json.loads((tmp_path / "runs" / "short1" / "eval.json").read_text())
    assert next(iter(stored.values()))["rel_l2"] == pytest.approx(test["test/rel_l2"], rel=1e-5)


def test_cli_refuses_per_patch_rollout_with_exit_2(tmp_path, ns_small):
    config = _config(tmp_path, ns_small, "rollout",
                     data={"inputs": ["w"], "targets": ["w"], "n_train": 8, "n_test": 2,
                           "time": {"input": 2, "output": 3, "mode": "rollout"}},
                     train={"batch_size": 2})
    result = run_nopx("train", "--config", str(config))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "model.stitching: false" in result.stderr and "rollout" in result.stderr
