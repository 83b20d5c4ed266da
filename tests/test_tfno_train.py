"""Training TFNO, MG-TFNO and MgNO: one Adam step in process, and short real runs of
``nopx train`` on the Darcy fixture, on 1 and on 8 CPU devices (the same result).

The ``nopx train`` runs cost about 35 s of CPU per model: marked slow (``pytest --slow``).
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import optax
import pytest
import yaml
from flax import nnx

from helpers import run_nopx
from nopx import models
from nopx.losses import relative_lp

MODELS = {
    "tfno": {"n_modes": [8, 8], "hidden_channels": 8, "n_layers": 1, "factorization": "tucker",
             "rank": 0.3},
    "mgtfno": {"n_modes": [8, 8], "hidden_channels": 8, "n_layers": 1, "levels": 1,
               "rank": 0.3},
    "mgno": {"hidden_channels": 8, "n_layers": 1, "levels": [[1, 0], [1, 0], [1, 0], [2, 0]]},
}


@pytest.mark.parametrize("name, kwargs", [
    ("tfno", {"n_modes": (4, 4), "hidden_channels": 4, "n_layers": 2, "rank": 0.3}),
    ("mgtfno", {"n_modes": (4, 4), "hidden_channels": 4, "n_layers": 1, "levels": 1,
                "stitching": False}),                   # per-patch loss
    ("mgno", {"hidden_channels": 4, "n_layers": 2, "levels": [[1, 0], [1, 0], [2, 0]]}),
])
def test_one_adam_step_reduces_the_loss(name, kwargs):
    model = models.build(name, in_channels=1, out_channels=1, **kwargs, rngs=nnx.Rngs(1))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 16, 1))
    target = jnp.sin(x)
    per_patch = getattr(model, "trains_per_patch", False)
    if per_patch:
        target = model.patch_target(target)             # (8, 8, 8, 1): 4 patches per field

    def loss(m):
        return relative_lp(m.patches(x) if per_patch else m(x), target)

    @nnx.jit
    def step(model, optimizer):
        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value, loss(model)

    before, after = step(model, optimizer)
    assert float(after) < float(before)


def _train(tmp_path: pathlib.Path, data: pathlib.Path, name: str,
           devices: int) -> tuple[list[dict], dict]:
    """The epoch events and the final test event of a two-epoch run."""
    run = f"{name}{devices}"
    config = tmp_path / f"{run}.yaml"
    config.write_text(yaml.safe_dump({
        "name": run,
        "data": {"path": str(data), "n_train": 32, "n_test": 16},
        "model": {"name": name, **MODELS[name]},
        "optim": {"lr": 3e-3},
        "train": {"epochs": 2, "batch_size": 8, "log_every": 4,
                  "run_dir": str(tmp_path / "runs" / run)},
    }))
    result = run_nopx("train", "--config", str(config), "--set", f"mesh.data={devices}",
                      env={"JAX_NUM_CPU_DEVICES": "8"})
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "runs" / run / "metrics.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    return [e for e in events if "train/loss" in e], next(e for e in events if "test/rel_l2" in e)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_trains_and_eight_devices_match_one(tmp_path, darcy_small, name):
    epochs, test = _train(tmp_path, darcy_small, name, 1)
    assert epochs[-1]["train/loss"] < epochs[0]["train/loss"]
    assert 0 < test["test/rel_l2"] < 1.5
    sharded_epochs, sharded_test = _train(tmp_path, darcy_small, name, 8)
    assert sharded_epochs[-1]["train/loss"] == pytest.approx(epochs[-1]["train/loss"], rel=1e-4)
    assert sharded_test["test/rel_l2"] == pytest.approx(test["test/rel_l2"], rel=1e-4)
