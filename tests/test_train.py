"""Training end to end through the real CLI: runs, checkpoints, exact resume, eval, errors."""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
import pytest
import yaml

from helpers import run_nopx
from nopx import training


def _experiment(tmp_path: pathlib.Path, data: pathlib.Path, name: str, **train) -> pathlib.Path:
    cfg = {
        "name": name,
        "data": {"path": str(data), "n_train": 64, "n_test": 16},
        "model": {"name": "fno", "n_modes": [8, 8], "hidden_channels": 8, "n_layers": 2},
        "optim": {"lr": 3e-3, "schedule": "cosine"},
        "train": {"epochs": 3, "batch_size": 8, "log_every": 4,
                  "run_dir": str(tmp_path / "runs" / name), **train},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _latest_params(run_dir: pathlib.Path) -> list[np.ndarray]:
    params = training.load_run(run_dir, which="latest").params
    return [np.asarray(leaf) for leaf in jax.tree.leaves(params)]


def _events(run_dir: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_train_selects_on_validation_and_tests_once(tmp_path, darcy_small):
    config = _experiment(tmp_path, darcy_small, "basic")
    result = run_nopx("train", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "58 train / 6 val / 16 test samples" in result.stderr
    run_dir = tmp_path / "runs" / "basic"
    events = _events(run_dir)
    epochs, final = events[:-1], events[-1]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert epochs[-1]["step"] == 3 * (58 // 8)
    assert epochs[-1]["train/loss"] < epochs[0]["train/loss"]
    assert all("val/rel_l2" in e and "val/h1" in e and not any(k.startswith("test/") for k in e)
               for e in epochs)
    best = min(epochs, key=lambda e: e["val/rel_l2"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["checkpoint"]["step"] == best["step"] == final["checkpoint_step"]
    assert summary["checkpoint"]["val/rel_l2"] == best["val/rel_l2"]
    assert summary["samples"] == {"train": 58, "val": 6, "test": 16}
    assert final["event"] == "test" and 0 < final["test/rel_l2"] < 1
    assert summary["test"]["test/rel_l2"] == final["test/rel_l2"]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["name"] == "basic"

    result = run_nopx("eval", "--run", str(run_dir), "--plot")
    assert result.returncode == 0, result.stderr
    assert "test/rel_l2" in result.stdout
    assert (run_dir / "eval_32x32.png").stat().st_size > 10_000
    stored = json.loads((run_dir / "eval.json").read_text())
    assert list(stored.values())[0]["rel_l2"] == pytest.approx(final["test/rel_l2"], rel=1e-5)

    result = run_nopx("eval", "--run", str(run_dir), "--resolution", "48")
    assert result.returncode == 0, result.stderr
    assert "48x48" in result.stdout


def test_validation_split_is_seeded_and_disjoint_from_test():
    from nopx.config import DataConfig
    from nopx.training.data import split_indices

    cfg = DataConfig(path="d.h5", n_train=50, n_test=10, n_val=8)
    train, val, test = split_indices(cfg, 70, seed=3)
    assert len(train) == 42 and len(val) == 8 and test.tolist() == list(range(60, 70))
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(50))
    again = split_indices(cfg, 70, seed=3)[1]
    other = split_indices(cfg, 70, seed=4)[1]
    assert again.tolist() == val.tolist() and other.tolist() != val.tolist()


def test_resume_keeps_the_schedule_and_extend_adds_a_phase(tmp_path, darcy_small):
    config = _experiment(tmp_path, darcy_small, "sched", epochs=2)
    assert run_nopx("train", "--config", str(config)).returncode == 0
    run_dir = tmp_path / "runs" / "sched"
    result = run_nopx("train", "--config", str(config), "--resume", "--set", "train.epochs=4")
    assert result.returncode == 2 and "--extend N" in result.stderr
    assert "learning-rate schedule" in result.stderr and "Traceback" not in result.stderr

    result = run_nopx("train", "--config", str(config), "--extend", "1")
    assert result.returncode == 0, result.stderr
    events = _events(run_dir)
    assert [e["epoch"] for e in events if "event" not in e] == [1, 2, 3]
    assert json.loads((run_dir / "schedule.json").read_text())["phases"] == [2, 1]
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 3 * (58 // 8)


def test_divergence_stops_with_a_diagnosis_and_saves_nothing_bad(tmp_path, darcy_small):
    config = _experiment(tmp_path, darcy_small, "diverge")
    result = run_nopx("train", "--config", str(config), "--set", "optim.lr=1e12",
                      "--set", "optim.schedule=constant")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "training diverged at step" in result.stderr
    assert "non-finite gradients in blocks." in result.stderr
    assert "last good checkpoint is step 0" in result.stderr
    assert "train.on_nonfinite: rollback" in result.stderr
    for leaf in _latest_params(tmp_path / "runs" / "diverge"):
        assert np.isfinite(leaf).all()


def test_divergence_rolls_back_with_a_lower_learning_rate(tmp_path, darcy_small):
    config = _experiment(tmp_path, darcy_small, "rollback")
    result = run_nopx("train", "--config", str(config), "--set", "optim.lr=1e12",
                      "--set", "optim.schedule=constant", "--set", "train.on_nonfinite=rollback",
                      "--set", "train.rollback_lr_factor=1e-15")
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "runs" / "rollback"
    rollback = [e for e in _events(run_dir) if e.get("event") == "rollback"]
    assert len(rollback) == 1 and rollback[0]["step"] == 0
    assert rollback[0]["lr_scale"] == pytest.approx(1e-15)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rollbacks"] == 1 and np.isfinite(summary["test"]["test/rel_l2"])


def test_user_errors_exit_2_without_traceback(tmp_path, darcy_small):
    missing = _experiment(tmp_path, tmp_path / "absent.h5", "missing")
    result = run_nopx("train", "--config", str(missing))
    assert result.returncode == 2
    assert "absent.h5" in result.stderr and "Traceback" not in result.stderr

    typo = _experiment(tmp_path, darcy_small, "typo")
    result = run_nopx("train", "--config", str(typo), "--set", "optim.lrr=1")
    assert result.returncode == 2 and "did you mean 'lr'" in result.stderr

    result = run_nopx("train", "--config", str(typo), "--set", "model.n_modes=[64,64]")
    assert result.returncode == 2 and "n_modes[0] = 64 exceeds the grid size 32" in result.stderr

    result = run_nopx("train", "--config", str(typo), "--set", "model.hiden_channels=4")
    assert result.returncode == 2 and "did you mean 'hidden_channels'" in result.stderr

    result = run_nopx("train", "--config", str(typo), "--set", "data.targets=[v]")
    assert result.returncode == 2 and "no field 'v'" in result.stderr

    result = run_nopx("eval", "--run", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "not a run directory" in result.stderr

    not_hdf5 = tmp_path / "junk.h5"
    not_hdf5.write_text("not a dataset")
    result = run_nopx("info", str(not_hdf5))
    assert result.returncode == 2 and "junk.h5" in result.stderr and "Traceback" not in result.stderr


def test_rerun_without_resume_is_refused(tmp_path, darcy_small):
    config = _experiment(tmp_path, darcy_small, "twice", epochs=1)
    assert run_nopx("train", "--config", str(config)).returncode == 0
    result = run_nopx("train", "--config", str(config))
    assert result.returncode == 2 and "--resume" in result.stderr
    result = run_nopx("train", "--config", str(config), "--resume", "--set", "optim.lr=0.1")
    assert result.returncode == 2 and "differs" in result.stderr
    result = run_nopx("train", "--config", str(config), "--resume",
                      "--set", "checkpoint.best_metric=test/rel_l2")
    assert result.returncode == 2 and "test set" in result.stderr and "val/rel_l2" in result.stderr


@pytest.mark.slow  # two CLI runs (74 s); tests/test_parallel.py checks every model's step in-process
def test_eight_device_mesh_matches_one_device(tmp_path, darcy_small):
    """Data parallelism over 8 CPU devices gives the single-device training result."""
    results = {}
    for devices in (1, 8):
        config = _experiment(tmp_path, darcy_small, f"mesh{devices}", epochs=1)
        result = run_nopx("train", "--config", str(config), "--set", f"mesh.data={devices}",
                          env={"JAX_NUM_CPU_DEVICES": "8"})
        assert result.returncode == 0, result.stderr
        assert f"x{devices}" in result.stderr
        epoch, final = _events(tmp_path / "runs" / f"mesh{devices}")
        results[devices] = {**epoch, **final}
    for key in ("train/loss", "val/rel_l2", "val/h1", "test/rel_l2", "test/h1"):
        assert results[8][key] == pytest.approx(results[1][key], rel=1e-4), key


def test_init_from_copies_matching_parameters_and_lists_the_rest(tmp_path, darcy_small):
    source = _experiment(tmp_path, darcy_small, "source", epochs=1)
    assert run_nopx("train", "--config", str(source)).returncode == 0
    target = _experiment(tmp_path, darcy_small, "target", epochs=1)
    # Two input channels: the lifting layer's first kernel changes shape and starts fresh.
    # Killed after its first step, the run's latest checkpoint is its starting point.
    result = run_nopx("train", "--config", str(target), "--set", "data.inputs=[a,a]",
                      "--set", f"init_from={tmp_path / 'runs' / 'source'}",
                      "--set", "optim.group_lr={'^lifting': 10.0}",
                      env={"NOPX_FAULT": "train_step:1"})
    assert result.returncode == -9, result.stderr
    assert "re-initialised (shape or name differs): lifting.layers.0.kernel" in result.stderr
    loaded = {name: run for name, run in (("source", training.load_run(tmp_path / "runs" / "source")),
                                           ("target", training.load_run(tmp_path / "runs" / "target",
                                                                        which="latest")))}
    flat = {name: {jax.tree_util.keystr(p): np.asarray(v)
                   for p, v in jax.tree_util.tree_leaves_with_path(run.params)}
            for name, run in loaded.items()}
    assert loaded["target"].meta["step"] == 0
    fresh = "['lifting']['layers'][0]['kernel'].value"
    assert flat["target"][fresh].shape != flat["source"][fresh].shape
    for key in set(flat["target"]) - {fresh}:
        np.testing.assert_array_equal(flat["target"][key], flat["source"][key])
