"""Training end to end through the real CLI: runs, checkpoints, exact resume, eval, errors."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import time

import jax
import numpy as np
import pytest
import yaml

from helpers import NOPX, run_nopx
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


def test_train_eval_plot(tmp_path, darcy_small):
    config = _experiment(tmp_path, darcy_small, "basic")
    result = run_nopx("train", "--config", str(config))
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "runs" / "basic"
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in events] == [1, 2, 3]
    assert events[-1]["step"] == 3 * (64 // 8)
    assert events[-1]["train/loss"] < events[0]["train/loss"]
    assert 0 < events[-1]["test/rel_l2"] < 1
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["name"] == "basic"

    result = run_nopx("eval", "--run", str(run_dir), "--plot")
    assert result.returncode == 0, result.stderr
    assert "test/rel_l2" in result.stdout
    assert (run_dir / "eval_32x32.png").stat().st_size > 10_000
    best = min(e["test/rel_l2"] for e in events)
    stored = json.loads((run_dir / "eval.json").read_text())
    assert list(stored.values())[0]["rel_l2"] == pytest.approx(best, rel=1e-4)

    result = run_nopx("eval", "--run", str(run_dir), "--resolution", "48")
    assert result.returncode == 0, result.stderr
    assert "48x48" in result.stdout


def test_killed_run_resumes_to_identical_weights(tmp_path, darcy_small):
    straight = _experiment(tmp_path, darcy_small, "straight", epochs=4)
    assert run_nopx("train", "--config", str(straight)).returncode == 0

    config = _experiment(tmp_path, darcy_small, "killed", epochs=4)
    latest = tmp_path / "runs" / "killed" / "checkpoints" / "latest"
    process = subprocess.Popen([NOPX, "train", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if latest.exists() and any(p.name.isdigit() for p in latest.iterdir()):
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    steps_done = [int(p.name) for p in latest.iterdir() if p.name.isdigit()]
    assert steps_done and max(steps_done) < 4 * 8, "the run finished before it could be killed"

    result = run_nopx("train", "--config", str(config), "--resume")
    assert result.returncode == 0, result.stderr
    assert "resumed" in result.stderr
    for a, b in zip(_latest_params(tmp_path / "runs" / "straight"),
                    _latest_params(tmp_path / "runs" / "killed")):
        np.testing.assert_array_equal(a, b)
    events = [json.loads(line) for line in
              (tmp_path / "runs" / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in events] == [1, 2, 3, 4]


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


def test_eight_device_mesh_matches_one_device(tmp_path, darcy_small):
    """Data parallelism over 8 CPU devices gives the single-device training result."""
    results = {}
    for devices in (1, 8):
        config = _experiment(tmp_path, darcy_small, f"mesh{devices}", epochs=1)
        result = run_nopx("train", "--config", str(config), "--set", f"mesh.data={devices}",
                          env={"JAX_NUM_CPU_DEVICES": "8"})
        assert result.returncode == 0, result.stderr
        assert f"x{devices}" in result.stderr
        line = (tmp_path / "runs" / f"mesh{devices}" / "metrics.jsonl").read_text().splitlines()[-1]
        results[devices] = json.loads(line)
    for key in ("train/loss", "test/rel_l2", "test/h1"):
        assert results[8][key] == pytest.approx(results[1][key], rel=1e-4), key
