"""Meshes, parameter sharding, sharded checkpoints and the input pipeline.

The sharded checks run in a process of their own with 8 CPU devices
(``parallel_checks.py``); each prints what it measured (run pytest with ``-s`` to see it).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import threading

import jax
import numpy as np
import pytest
import yaml
from flax import nnx
from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as P

from helpers import run_nopx
from nopx import config, models
from nopx.distributed import detect
from nopx.errors import UserError
from nopx.parallel import make_mesh, param_shardings, path_name
from nopx.training.prefetch import Prefetch
from nopx.training.source import epoch_batches, epoch_order

CHECKS = pathlib.Path(__file__).with_name("parallel_checks.py")
TOLERANCE = 1e-6  # relative, float32: the reduction order differs between meshes


def _run_checks(*checks: str) -> dict:
    result = subprocess.run([sys.executable, str(CHECKS), *checks], capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report.pop("devices") == 8
    print(json.dumps(report, indent=1))
    return report


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> dict:
    """One 8-device process: mesh parsing, parameter memory, checkpoints across meshes, a
    depthwise convolution's gradient."""
    return _run_checks("meshes", "memory", f"checkpoint:{tmp_path_factory.mktemp('ckpt')}",
                       "depthwise")


def test_mesh_sizes_resolve_and_bad_ones_name_the_key(sharded):
    meshes = sharded["meshes"]
    assert meshes["-1,1"] == {"data": 8, "model": 1}
    assert meshes["-1,2"] == {"data": 4, "model": 2}
    assert meshes["2,-1"] == {"data": 2, "model": 4}
    assert meshes["2,2"] == {"data": 2, "model": 2}   # a divisor of the devices: a sub-mesh
    assert "mesh.data = 3 does not divide the 8" in meshes["3,1"]
    assert "mesh.model = 3" in meshes["-1,3"]
    assert "= 16 does not divide" in meshes["4,4"]
    assert "both -1" in meshes["-1,-1"]
    assert "train.batch_size 6 is not a multiple of mesh.data = 4" in meshes["batch 6 on data 4"]


def test_mesh_config_is_validated():
    base = {"name": "m", "data": {"path": "d.h5"}, "model": {"name": "fno"}}
    mesh = config.from_mapping({**base, "mesh": {"data": -1, "model": 2}}, where="c").mesh
    assert (mesh.data, mesh.model) == (-1, 2)
    with pytest.raises(UserError, match="mesh.data: mesh.data and mesh.model are both -1"):
        config.from_mapping({**base, "mesh": {"data": -1, "model": -1}}, where="c")
    with pytest.raises(UserError, match="unknown key 'mesh.modle'; did you mean 'model'"):
        config.from_mapping({**base, "mesh": {"modle": 2}}, where="c")
    with pytest.raises(UserError, match="mesh.model: must be -1"):
        config.from_mapping({**base, "mesh": {"model": 0}}, where="c")


def test_mesh_larger_than_the_devices_is_a_user_error():
    with pytest.raises(UserError, match="mesh.model = 64 does not divide"):
        make_mesh(1, 64, where="cfg")


def test_cli_refuses_a_bad_mesh_with_exit_2(tmp_path, darcy_small):
    config = tmp_path / "mesh.yaml"
    config.write_text(yaml.safe_dump({
        "name": "mesh", "data": {"path": str(darcy_small), "n_train": 16, "n_test": 8},
        "model": {"name": "fno", "n_modes": [4, 4], "hidden_channels": 4, "n_layers": 1},
        "train": {"batch_size": 6, "run_dir": str(tmp_path / "run")}, "mesh": {"data": 4}}))
    result = run_nopx("train", "--config", str(config), env={"JAX_NUM_CPU_DEVICES": "8"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "train.batch_size 6 is not a multiple of mesh.data = 4" in result.stderr
    assert not (tmp_path / "run").exists()   # refused before the run directory is touched


def test_parameter_memory_per_device_falls_by_the_model_axis(sharded):
    memory = sharded["memory"]
    single = memory["model=1"]
    assert single == 4 * memory["parameters"]
    for size in (2, 4, 8):
        # Spectral weights and kernels shard; biases and 1-channel layers stay replicated.
        assert single / memory[f"model={size}"] > 0.99 * size
    print("FNO 1.19M parameters, bytes per device: "
          + ", ".join(f"{k} {v:,}" for k, v in memory.items() if k.startswith("model")))


def test_checkpoint_saved_on_one_mesh_restores_onto_another(sharded):
    for target, result in sharded["checkpoint"].items():
        assert result == {"equal": True, "meta": 1, "target_layout": True}, target


def _check_equivalence(name: str, meshes: tuple[str, ...]) -> None:
    report = _run_checks(f"equivalence:{name},{','.join(meshes)}")["equivalence"]
    for mesh, result in report.items():
        for key in ("loss", "params", "opt_state"):
            assert result[key] < TOLERANCE, (mesh, key, result)
        # Parameter by parameter too (a wrong small one hides in the norms): in float32 small
        # gradients keep less of their precision; in float64 every one agrees to TOLERANCE.
        bound = TOLERANCE if result["dtype"] == "float64" else 100 * TOLERANCE
        assert result["worst_leaf"] < bound, (mesh, result)
        # Adam's first update is g / (|g| + eps): it magnifies the rounding of tiny gradients.
        assert result["update"] < 100 * TOLERANCE, (mesh, result)
        if mesh.endswith("x1"):
            assert result["sharded_params"] == 0
        else:
            assert result["sharded_params"] > 0, "the model declares no sharding the mesh can use"


def test_fno_step_on_a_data_by_model_mesh_equals_one_device():
    _check_equivalence("fno", ("4x2",))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(models.available()) - {"fno"}))
def test_every_model_step_on_meshes_equals_one_device(name):
    _check_equivalence(name, ("8x1", "2x4"))


def test_depthwise_convolution_gradient_on_a_data_by_model_mesh(sharded):
    # XLA's SPMD partitioner (jax 0.10.2) all-reduces the kernel gradient of a grouped
    # convolution over all 8 devices of a 2x4 mesh: 4 times one device's. scOT's ConvNeXt
    # blocks therefore convolve by shifted products (models/scot.py DepthwiseConv).
    ratios = sharded["depthwise"]
    assert ratios["DepthwiseConv"] == pytest.approx(1.0, rel=1e-6)
    print("kernel gradient on 2x4 / on one device:", ratios)


def test_scot_attention_is_split_by_whole_heads():
    # scOT-T's 3, 6, 12 and 24 heads, 2 channels each; MLPs (4C hidden units) always split.
    params = nnx.state(nnx.eval_shape(lambda: models.ScOT(
        4, 4, "T", hidden_channels=6, depths=(1, 1, 1, 1))), nnx.Param)
    for size, split in ((2, {1, 2, 3}), (4, {2, 3}), (8, {3})):
        shardings = param_shardings(AbstractMesh((8 // size, size), ("data", "model")), params,
                                    models.ScOT.sharding_rules)
        specs = {path_name(path): sharding.spec
                 for path, sharding in jax.tree_util.tree_leaves_with_path(shardings)}
        for stage in range(4):
            block, whole = f"decoder/{stage}/blocks/0", stage in split
            attention = {"query/kernel": P(None, "model"), "value/bias": P("model"),
                         "output/kernel": P("model", None), "logit_scale": P("model"),
                         "cpb_out/kernel": P(None, "model")}
            for name, spec in attention.items():
                assert specs[f"{block}/attention/{name}"] == (spec if whole else P()), name
            assert specs[f"{block}/mlp/layers/0/kernel"] == P(None, "model")
            assert specs[f"{block}/mlp/layers/1/kernel"] == P("model", None)
            assert specs[f"{block}/attention_norm/scale/kernel"] == P()
    with pytest.raises(ValueError, match="no parameter 'a/heads' counts the blocks of 'a/q'"):
        param_shardings(AbstractMesh((1, 2), ("data", "model")),
                        {"a": {"q": jax.ShapeDtypeStruct((4, 4), np.float32)}},
                        [(r"q$", -1, "heads")])


def test_every_registered_model_declares_a_sharding_rule():
    for name in models.available():
        rules = getattr(models.get(name), "sharding_rules", ())
        assert rules, f"{name} declares no sharding_rules: everything would be replicated"


def test_epoch_batches_are_whole_and_depend_on_seed_and_epoch_only():
    batches = list(epoch_batches(3, 2, 10, 4))
    assert [len(b) for b in batches] == [4, 4]
    np.testing.assert_array_equal(np.concatenate(batches), epoch_order(3, 2, 10)[:8])
    resumed = list(epoch_batches(3, 2, 10, 4, start=1))
    np.testing.assert_array_equal(resumed[0], batches[1])
    assert not np.array_equal(epoch_order(3, 2, 10), epoch_order(3, 3, 10))


def test_prefetch_keeps_order_raises_errors_and_stops_when_closed():
    with Prefetch(iter(range(20)), depth=2) as items:
        assert list(items) == list(range(20))

    def failing():
        yield 1
        raise UserError("sample 7 holds NaN")

    with Prefetch(failing()) as items:
        assert next(items) == 1
        with pytest.raises(UserError, match="sample 7"):
            next(items)

    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]

    before = threading.active_count()
    with Prefetch(endless(), depth=2) as items:
        assert next(items) == 0
    assert threading.active_count() == before
    assert len(produced) <= 4  # one taken, two queued, one waiting to be queued


def test_distributed_detects_launchers():
    assert detect({}) is None
    assert detect({"SLURM_JOB_ID": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "8"}) == "slurm"
    assert detect({"SLURM_JOB_ID": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) is None
    assert detect({"TPU_WORKER_HOSTNAMES": "t0,t1,t2,t3"}) == "tpu"
    assert detect({"TPU_WORKER_HOSTNAMES": "localhost"}) is None
