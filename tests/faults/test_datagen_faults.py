"""``nopx datagen`` killed, starved of disk, or raced, then resumed: the uninterrupted dataset.

Kill points come from the ``NOPX_FAULT=POINT:COUNT[:ACTION]`` hook
(:mod:`nopx.datagen.faults`: ``create``, ``start``, ``sample``, ``write``, ``flush``,
``done``, ``finish``) and, in the full set, from seeded random wall-clock delays that land
anywhere (inside a solve, inside HDF5). After ``--resume`` every sample, its parameters and
its solver statistics must equal an uninterrupted run's, each sample written exactly once.
A fast subset runs by default; ``pytest --faults-full`` tries every seeded point. The
failing runs are real ``nopx datagen`` processes; most resumes run in-process (the same
``generate(..., resume=True)`` that ``--resume`` calls) to keep the suite fast.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from helpers import NOPX, run_nopx
from nopx.datagen import generate, open_dataset, recipe_from_mapping
from nopx.datagen.dataset import WriteLock
from nopx.datagen.runner import plan

RECIPE = {"pde": "darcy", "seed": 7, "samples": 24, "out": "unused.h5", "grid": {"n": 16},
          "darcy": {"modes": 8}, "solver": {"chain": 6}}
COMPARED = ("params", "residual", "iterations", "matvecs", "retried")


def _chains() -> int:
    recipe = recipe_from_mapping(RECIPE, where="faults")
    return len(plan(recipe, recipe.family(), 0, recipe.samples))


def _full_points() -> list[tuple[str, int, str]]:
    """Every seeded ``(point, count, action)`` of the full set."""
    rng = np.random.default_rng(2026)
    chains = _chains()
    points = [("create", 1, "kill"), ("start", 1, "kill"), ("finish", 1, "kill")]
    points += [("sample", int(c), "kill") for c in sorted(rng.choice(np.arange(1, 25), 6, replace=False))]
    for point in ("write", "flush", "done"):
        points += [(point, int(c), "kill") for c in sorted(rng.choice(np.arange(1, chains + 1), 2, replace=False))]
    points += [(point, 1 + int(rng.integers(chains)) if point != "finish" else 1, "enospc")
               for point in ("write", "flush", "done", "finish")]
    return points


FAST = [("create", 1, "kill"), ("sample", 5, "kill"), ("flush", 2, "kill"), ("finish", 1, "kill"),
        ("write", 2, "enospc")]
FULL = _full_points()
DELAYS = 5  # seeded random-time kills, --faults-full only


def _content(path: pathlib.Path) -> dict[str, np.ndarray]:
    """Everything that must not depend on interruptions; also checks each sample is written once."""
    with open_dataset(path) as data:
        assert data.meta("done").all()
        assert sorted(data.meta("order")) == list(range(data.n_samples))
        content = {name: data.read_range(name, 0, data.n_samples) for name in data.fields}
        content.update({name: data.meta(name) for name in COMPARED})
        content["sha256"] = np.array(sorted(data.verify().items()))
    return content


def _assert_same(expected: dict[str, np.ndarray], path: pathlib.Path) -> None:
    actual = _content(path)
    assert expected.keys() == actual.keys()
    for name in expected:
        np.testing.assert_array_equal(expected[name], actual[name], err_msg=name)
    assert not WriteLock(path).path.exists() and not path.with_name(path.name + ".creating").exists()


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("recipe") / "faults.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("reference") / "reference.h5"
    return _content(generate(recipe_from_mapping(RECIPE, where="faults"), out))


def _resume(mapping: dict, out: pathlib.Path) -> None:
    generate(recipe_from_mapping(mapping, where="resume"), out, resume=True)


def _datagen(recipe_file: pathlib.Path, out: pathlib.Path, *args: str, fault: str | None = None):
    env = {"NOPX_FAULT": fault} if fault else {"NOPX_FAULT": ""}
    return run_nopx("datagen", "--config", str(recipe_file), "--out", str(out), *args, env=env)


@pytest.mark.parametrize("point,count,action", FULL + [p for p in FAST if p not in FULL])
def test_fault_then_resume_is_the_uninterrupted_dataset(request, tmp_path, recipe_file, reference,
                                                        point, count, action):
    if (point, count, action) not in FAST and not request.config.getoption("--faults-full"):
        pytest.skip("in the --faults-full set only")
    out = tmp_path / "d.h5"
    failed = _datagen(recipe_file, out, fault=f"{point}:{count}:{action}")
    if action == "kill":
        assert failed.returncode == -signal.SIGKILL, failed.stderr
    else:
        assert failed.returncode == 2, failed.stderr
        assert "no space left on device" in failed.stderr and "--resume" in failed.stderr
        assert "Traceback" not in failed.stderr
    _resume(RECIPE, out)
    _assert_same(reference, out)


def test_killed_twice_and_a_dead_worker(request, tmp_path, recipe_file, reference):
    """A resumed run killed again; a --workers run whose worker is killed (exit 2, not a hang)."""
    if not request.config.getoption("--faults-full"):
        pytest.skip("in the --faults-full set only")
    out = tmp_path / "d.h5"
    assert _datagen(recipe_file, out, fault="sample:9").returncode == -signal.SIGKILL
    assert _datagen(recipe_file, out, "--resume", fault="write:1").returncode == -signal.SIGKILL
    assert _datagen(recipe_file, out, "--resume").returncode == 0
    _assert_same(reference, out)

    out = tmp_path / "workers.h5"
    died = _datagen(recipe_file, out, "--workers", "2", fault="sample:4")
    assert died.returncode == 2 and "worker process died" in died.stderr and "Traceback" not in died.stderr
    assert _datagen(recipe_file, out, "--resume", "--workers", "2").returncode == 0
    _assert_same(reference, out)


LONG = {**RECIPE, "samples": 800, "grid": {"n": 32}}


@pytest.fixture(scope="module")
def long_run(request, tmp_path_factory) -> tuple[pathlib.Path, dict[str, np.ndarray]]:
    """A recipe that runs for seconds, and its uninterrupted dataset (--faults-full only)."""
    if not request.config.getoption("--faults-full"):
        pytest.skip("in the --faults-full set only")
    folder = tmp_path_factory.mktemp("long")
    (folder / "long.yaml").write_text(yaml.safe_dump(LONG))
    return folder / "long.yaml", _content(generate(recipe_from_mapping(LONG, where="long"), folder / "ref.h5"))


@pytest.mark.parametrize("index", range(DELAYS))
def test_kill_after_a_random_delay(tmp_path, long_run, index):
    """SIGKILL at a seeded random time while samples are solved and written, then --resume."""
    recipe, reference = long_run
    out = tmp_path / "d.h5"
    process = subprocess.Popen([NOPX, "datagen", "--config", str(recipe), "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    process.stderr.readline()  # the first progress line: 10% written
    time.sleep(np.random.default_rng([2026, index]).uniform(0.0, 1.5))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL  # it was still running: a real interruption
    _resume(LONG, out)
    _assert_same(reference, out)


HOLDER = """
import sys, time
import nopx.datagen as dg

def progress(done, total):
    if done:
        print(done, flush=True)
        time.sleep(120)  # hold the file open, lock taken, until killed

dg.generate(dg.load_recipe(sys.argv[1]), sys.argv[2], progress=progress)
"""


def test_second_writer_is_refused_and_a_stale_lock_taken_over(tmp_path, recipe_file, reference):
    out = tmp_path / "d.h5"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(recipe_file), str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert int(holder.stdout.readline()) > 0
        second = _datagen(recipe_file, out, "--resume")
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"another process (PID {holder.pid} on " in second.stderr and "is writing" in second.stderr
        shown = run_nopx("info", str(out))  # HDF5 locks the file while it is written
        assert shown.returncode == 2 and f"being written by process {holder.pid}" in shown.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert WriteLock(out).holder()[0] == holder.pid  # left behind by the killed writer: stale
    _resume(RECIPE, out)
    _assert_same(reference, out)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (root only); yields its directory and a function that enlarges it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")

    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)

    yield disk, grow
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_a_clear_error_and_resume_completes(tmp_path, small_disk):
    disk, grow = small_disk
    mapping = {**RECIPE, "samples": 96, "storage": {"dtype": "float64"}}  # 384 KiB of fields, 256 KiB disk
    recipe = tmp_path / "big.yaml"
    recipe.write_text(yaml.safe_dump(mapping))
    out = disk / "d.h5"
    full = _datagen(recipe, out)
    assert full.returncode == 2 and "Traceback" not in full.stderr
    assert "no space left on device" in full.stderr and "free disk space" in full.stderr
    assert not any(disk.iterdir())  # nothing half-made, no lock left behind
    grow()
    assert _datagen(recipe, out, "--resume").returncode == 0
    _assert_same(_content(generate(recipe_from_mapping(mapping, where="disk"), tmp_path / "ref.h5")), out)
