"""Shared fixtures: a small real Darcy dataset made once per session by ``nopx datagen``."""

from __future__ import annotations

import pathlib

import pytest

from helpers import run_nopx

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def darcy_small(tmp_path_factory) -> pathlib.Path:
    """80 piecewise-constant Darcy samples on a 32x32 grid, written by the real CLI."""
    out = tmp_path_factory.mktemp("data") / "darcy_small.h5"
    result = run_nopx("datagen", "--config", str(ROOT / "experiments/datagen/darcy_pwc.yaml"),
                      "--set", "samples=80", "--set", "grid.n=32", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def ns_small(tmp_path_factory) -> pathlib.Path:
    """12 Navier-Stokes trajectories (t = 0..14) on a 32x32 torus, written by the real CLI."""
    out = tmp_path_factory.mktemp("data") / "ns_small.h5"
    result = run_nopx("datagen", "--config", str(ROOT / "experiments/datagen/ns_quick.yaml"),
                      "--set", "samples=12", "--set", "grid.n=32", "--set", "navier_stokes.t_end=14",
                      "--set", "navier_stokes.batch=6", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def pytest_addoption(parser: pytest.Parser) -> None:
    # Here, not in tests/faults/conftest.py: pytest reads options only from the root conftest.
    parser.addoption("--faults-full", action="store_true",
                     help="tests/faults: try every seeded kill point, not only the fast subset")
    parser.addoption("--slow", action="store_true",
                     help="also run the tests marked slow (long compiles, extra CLI runs); "
                          "plain pytest, as CI runs it, skips them")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a long test that plain pytest skips (run with --slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with pytest --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
