"""``train.time_limit``: a wall-clock budget that stops training at an epoch end, tests the
validation-selected checkpoint as usual, and carries over a resume."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from helpers import run_nopx
from nopx.config import load
from nopx.errors import UserError


def _config(tmp_path: pathlib.Path, data: pathlib.Path, time_limit: float) -> pathlib.Path:
    cfg = {"name": "budget",
           "data": {"path": str(data), "n_train": 32, "n_test": 8},
           "model": {"name": "fno", "n_modes": [6, 6], "hidden_channels": 6, "n_layers": 1},
           "train": {"epochs": 4, "batch_size": 8, "time_limit": time_limit,
                     "run_dir": str(tmp_path / "run")}}
    path = tmp_path / "budget.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _summary(tmp_path: pathlib.Path) -> dict:
    return json.loads((tmp_path / "run" / "summary.json").read_text())


def _epochs(tmp_path: pathlib.Path) -> list[int]:
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    return [e["epoch"] for e in map(json.loads, lines) if "event" not in e]


def _stopped_run(tmp_path: pathlib.Path, data: pathlib.Path) -> tuple[pathlib.Path, dict]:
    """A 4-epoch run with a 6 ms budget: the first epoch ends past it."""
    config = _config(tmp_path, data, 1e-4)
    result = run_nopx("train", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "train.time_limit of 0.0001 min reached after epoch 1 of 4" in result.stderr
    return config, _summary(tmp_path)


def test_time_limit_stops_after_the_first_epoch_past_it(tmp_path, darcy_small):
    _, summary = _stopped_run(tmp_path, darcy_small)
    budget = summary["time_limit"]
    assert budget["stopped"] and budget["epochs_done"] == 1 and budget["minutes"] == 1e-4
    assert budget["seconds"] > 0 and summary["steps"] == 3 and summary["epochs"] == 4
    assert summary["checkpoint"]["epoch"] == 1 and 0 < summary["test"]["test/rel_l2"] < 10
    assert _epochs(tmp_path) == [1]


@pytest.mark.slow
def test_resume_keeps_the_clock_and_a_larger_budget_continues(tmp_path, darcy_small):
    config, stopped = _stopped_run(tmp_path, darcy_small)
    result = run_nopx("train", "--config", str(config), "--resume")   # the budget is spent
    assert result.returncode == 0, result.stderr
    assert _summary(tmp_path)["time_limit"]["epochs_done"] == 1 and _epochs(tmp_path) == [1]

    result = run_nopx("train", "--config", str(config), "--resume",
                      "--set", "train.time_limit=60")
    assert result.returncode == 0, result.stderr
    resumed = _summary(tmp_path)["time_limit"]
    assert not resumed["stopped"] and resumed["epochs_done"] == 4 and resumed["minutes"] == 60
    assert resumed["seconds"] >= stopped["time_limit"]["seconds"]     # the clock carried over
    assert _epochs(tmp_path) == [1, 2, 3, 4]


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_bad_time_limit_names_the_key(tmp_path, value):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "c", "data": {"path": "d.h5"},
                                    "model": {"name": "fno"}}))
    with pytest.raises(UserError, match=r"c.yaml: train.time_limit: "):
        load(path, [f"train.time_limit={value}"])


def test_cli_refuses_a_bad_time_limit_with_exit_2(tmp_path, darcy_small):
    result = run_nopx("train", "--config", str(_config(tmp_path, darcy_small, 1.0)),
                      "--set", "train.time_limit=-1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "train.time_limit: must be a positive number of minutes" in result.stderr
