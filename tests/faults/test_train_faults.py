"""``nopx train`` killed with SIGKILL at seeded points, then resumed: the same run.

Kill points (``NOPX_FAULT=POINT:COUNT``, see ``nopx.datagen.faults``): ``train_start``
(config written, nothing saved), ``train_step`` (a step dispatched, not finished),
``train_save`` (an asynchronous checkpoint save in flight), ``train_final`` (the test
line written, ``summary.json`` not yet). After ``--resume`` the run must end with the
weights, the metrics log (all but wall times) and the summary of an uninterrupted run.
A fast subset runs by default; ``pytest --faults-full`` tries every seeded point. A full
disk (a small tmpfs) during checkpointing is a clear error, and the resumed run is whole.
"""

from __future__ import annotations

import json
import pathlib
import subprocess

import jax
import numpy as np
import pytest
import yaml

from helpers import run_nopx
from nopx import training
from nopx.errors import UserError

EPOCHS, STEPS_PER_EPOCH, EVERY_STEPS = 3, 3, 2
SAVES = 1 + 3 + EPOCHS  # step 0, steps 2, 4, 8 (mid-epoch), every epoch end
FAST = [("train_step", 5), ("train_save", 3)]


def _full_points() -> list[tuple[str, int]]:
    rng = np.random.default_rng(2026)
    steps = sorted(rng.choice(np.arange(1, EPOCHS * STEPS_PER_EPOCH + 1), 5, replace=False))
    saves = sorted(rng.choice(np.arange(1, SAVES + 1), 4, replace=False))
    return ([("train_start", 1)] + [("train_step", int(c)) for c in steps]
            + [("train_save", int(c)) for c in saves] + [("train_final", 1)])


def _config(tmp_path: pathlib.Path, data: pathlib.Path, name: str) -> pathlib.Path:
    cfg = {"name": "faults",
           "data": {"path": str(data), "n_train": 32, "n_test": 8},
           "model": {"name": "fno", "n_modes": [6, 6], "hidden_channels": 6, "n_layers": 2},
           "optim": {"lr": 3e-3, "schedule": "cosine"},
           "train": {"epochs": EPOCHS, "batch_size": 8, "log_every": 1,
                     "run_dir": str(tmp_path / name)},
           "checkpoint": {"every_steps": EVERY_STEPS}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _outcome(run_dir: pathlib.Path) -> dict:
    """What must not depend on interruptions: weights, metrics (no wall times), summary."""
    params = [np.asarray(p) for p in jax.tree.leaves(training.load_run(run_dir, which="latest").params)]
    events = [{k: v for k, v in json.loads(line).items() if k != "train/seconds"}
              for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"params": params, "events": events,
            "summary": json.loads((run_dir / "summary.json").read_text())}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, darcy_small):
    tmp_path = tmp_path_factory.mktemp("reference")
    result = run_nopx("train", "--config", str(_config(tmp_path, darcy_small, "straight")))
    assert result.returncode == 0, result.stderr
    outcome = _outcome(tmp_path / "straight")
    assert outcome["events"][-1]["step"] == EPOCHS * STEPS_PER_EPOCH
    return {**outcome, "run_dir": tmp_path / "straight"}


def _points(request) -> list[tuple[str, int]]:
    return _full_points() if request.config.getoption("--faults-full", default=False) else FAST


@pytest.mark.parametrize("index", range(len(_full_points())))
def test_kill_and_resume_is_the_uninterrupted_run(request, tmp_path, darcy_small, reference,
                                                   index):
    points = _points(request)
    if index >= len(points):
        pytest.skip("in the --faults-full set only")
    point, count = points[index]
    config = _config(tmp_path, darcy_small, "killed")
    killed = run_nopx("train", "--config", str(config), env={"NOPX_FAULT": f"{point}:{count}"})
    assert killed.returncode == -9, f"{point}:{count} was not reached: {killed.stderr[-2000:]}"
    result = run_nopx("train", "--config", str(config), "--resume")
    assert result.returncode == 0, result.stderr
    outcome = _outcome(tmp_path / "killed")
    for a, b in zip(reference["params"], outcome["params"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert outcome["events"] == reference["events"]
    assert outcome["summary"] == reference["summary"]


def _disk_usage(path: pathlib.Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*"))


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs mount (root only; skipped elsewhere) to fill up; ``resize(bytes)`` changes it."""
    mount = tmp_path / "disk"
    mount.mkdir()

    def resize(size: int, *, first: bool = False) -> None:
        options = f"size={size}" if first else f"remount,size={size}"
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)],
                                capture_output=True, text=True)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")

    yield mount, resize
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_disk_full_while_checkpointing_then_resume(tmp_path, darcy_small, reference, small_disk):
    mount, resize = small_disk
    config = _config(tmp_path, darcy_small, "full")
    straight = reference["run_dir"]
    one_checkpoint = _disk_usage(straight / "checkpoints" / "latest" / str(EPOCHS * STEPS_PER_EPOCH))
    resize(int(1.5 * one_checkpoint) + 64 * 1024, first=True)  # room for step 0, not for more
    args = ["train", "--config", str(config), "--set", f"train.run_dir={mount / 'run'}"]
    result = run_nopx(*args)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "the disk is full" in result.stderr and "--resume" in result.stderr
    assert "Traceback" not in result.stderr
    resize(64 * 2**20)
    result = run_nopx(*args, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = _outcome(mount / "run")
    for a, b in zip(reference["params"], outcome["params"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert outcome["events"] == reference["events"]


def test_disk_full_while_appending_metrics_is_a_user_error_and_no_half_line(small_disk):
    from nopx.training.loop import MetricsLog

    mount, resize = small_disk
    resize(16 * 1024, first=True)
    log = MetricsLog(mount / "metrics.jsonl")
    written = 0
    with pytest.raises(UserError, match="metrics.jsonl: the disk is full"):
        while True:                                # until the 16 KiB tmpfs is full
            log.write({"step": written, "train/loss": 0.5, "note": "x" * 200})
            written += 1
    assert [e["step"] for e in log.read()] == list(range(written))   # every line whole
