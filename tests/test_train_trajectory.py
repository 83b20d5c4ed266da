"""Trajectory tasks through the real CLI: FNO rollout, FNO space-time, SFNO + Spectral-Refiner."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from helpers import run_nopx


def _config(tmp_path: pathlib.Path, dataset: pathlib.Path, name: str, time: dict, model: dict,
            data: dict | None = None, **extra) -> pathlib.Path:
    cfg = {"name": name,
           "data": {"path": str(dataset), "inputs": ["w"], "targets": ["w"], "n_train": 8,
                    "n_test": 4, "time": time, **(data or {})},
           "model": model,
           "train": {"epochs": 2, "batch_size": 4, "run_dir": str(tmp_path / name)},
           **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _events(run_dir: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("mode, model", [
    ("rollout", {"name": "fno", "n_modes": [8, 8], "hidden_channels": 8, "n_layers": 2}),
    ("spacetime", {"name": "fno", "n_modes": [8, 8, 4], "hidden_channels": 6, "n_layers": 2}),
])
def test_fno_trajectory_modes_train_and_report_per_step(tmp_path, ns_small, mode, model):
    config = _config(tmp_path, ns_small, mode, {"input": 10, "output": 4, "mode": mode}, model)
    result = run_nopx("train", "--config", str(config))
    assert result.returncode == 0, result.stderr
    steps = result.stderr.split("test rel L2 per predicted step:")[1].splitlines()[0].split()
    assert len(steps) == 4
    assert 0 < _events(tmp_path / mode)[-1]["test/rel_l2"] < 2

    result = run_nopx("eval", "--run", str(tmp_path / mode), "--plot")
    assert result.returncode == 0, result.stderr
    for suffix in ("per_step", "snapshots", "spectra"):
        assert (tmp_path / mode / f"eval_32x32_{suffix}.png").stat().st_size > 5_000


def test_sfno_with_spectral_refine_stage_lowers_the_residual(tmp_path, ns_small):
    config = _config(
        tmp_path, ns_small, "sfno", {"input": 10, "output": 4, "mode": "direct"},
        {"name": "sfno", "n_modes": [4, 4, 3], "hidden_channels": 4, "n_layers": 2,
         "latent_steps": 4},
        data={"normalize": False},
        stages=[{"kind": "spectral_refine", "iterations": 4, "samples": 2, "batch": 2,
                 "modes": [8, 8, 4]}])
    result = run_nopx("train", "--config", str(config))
    assert result.returncode == 0, result.stderr
    refined = next(e for e in _events(tmp_path / "sfno") if e.get("event") == "stage")
    assert refined["stage"] == "spectral_refine" and refined["refine/samples"] == 2
    assert refined["refine/residual_after"] < refined["refine/residual_before"]

    normalized = _config(tmp_path, ns_small, "sfno_norm", {"input": 10, "output": 4, "mode": "direct"},
                         {"name": "sfno", "n_modes": [4, 4, 3], "hidden_channels": 4, "n_layers": 2},
                         stages=[{"kind": "spectral_refine", "iterations": 1}])
    result = run_nopx("train", "--config", str(normalized))
    assert result.returncode == 2 and "data.normalize: false" in result.stderr
