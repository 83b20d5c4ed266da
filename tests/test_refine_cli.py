"""``nopx refine`` on a tiny real run: the output dataset, and user errors (exit 2)."""

from __future__ import annotations

import pathlib

import h5py
import numpy as np
import pytest
import yaml
from flax import nnx

from nopx import datagen
from nopx.cli import main
from nopx.config import from_mapping
from nopx.datagen.dataset import DatasetWriter
from nopx.errors import UserError
from nopx.models import FNO, SFNO
from nopx.training.refine_stage import check_refinable


@pytest.fixture(scope="module")
def sfno_run(tmp_path_factory, ns_small) -> pathlib.Path:
    """A tiny SFNO trained one epoch by ``nopx train`` on ns_small at 16² (physical units)."""
    root = tmp_path_factory.mktemp("refine_cli")
    cfg = {"name": "sfno_tiny",
           "data": {"path": str(ns_small), "inputs": ["w"], "targets": ["w"], "n_train": 8,
                    "n_test": 4, "normalize": False, "subsample": 2,
                    "time": {"input": 10, "output": 4, "mode": "direct"}},
           "model": {"name": "sfno", "n_modes": [4, 4, 3], "hidden_channels": 4, "n_layers": 2,
                     "latent_steps": 4},
           "train": {"epochs": 1, "batch_size": 4, "run_dir": str(root / "run")}}
    config = root / "sfno_tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(config)]) == 0
    return root / "run"


def test_refine_writes_a_dataset(sfno_run, ns_small, tmp_path, capsys):
    out = tmp_path / "refined.h5"
    assert main(["refine", "--run", str(sfno_run), "--data", str(ns_small), "--samples", "3",
                 "--batch", "2", "--iterations", "3", "--subsample", "2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "residual ratio" in printed and "rel_l2_after" in printed and str(out) in printed
    with datagen.open_dataset(out) as refined:
        assert refined.fields == ("w", "w_initial") and refined.n_samples == 3
        assert refined.field_shape("w") == (14, 16, 16)
        w, initial = refined.read_range("w", 0, 3), refined.read_range("w_initial", 0, 3)
        np.testing.assert_array_equal(refined.meta("params")[:, 0], [9, 10, 11])  # the last 3
        recipe = yaml.safe_load(refined.attrs["recipe"])
    with h5py.File(out) as file:
        before, after, history, error = (file["refine"][name][()] for name in (
            "residual_before", "residual_after", "residual_history", "rel_l2_after"))
    assert history.shape == (3, 4) and error.shape == (3,)
    np.testing.assert_array_equal(after, history.min(axis=1))          # the best iterate
    assert np.all(after <= before) and np.all(before > 0)
    assert not np.array_equal(w[:, 10:], initial[:, 10:])
    with datagen.open_dataset(ns_small) as source:
        inputs = source.read_range("w", 9, 12)[:, :10, ::2, ::2]
    np.testing.assert_array_equal(w[:, :10], inputs)                  # inputs, then the refined
    assert recipe["refine"]["run"] == str(sfno_run.resolve()) and recipe["refine"]["samples"] == 3
    assert recipe["navier_stokes"]["nu"] == pytest.approx(1e-3)
    assert "complete: 3/3 samples done" in datagen.info(out)          # what `nopx info` prints


def _error(capsys, *args: str) -> str:
    assert main(["refine", *args]) == 2
    return capsys.readouterr().err


def test_refine_user_errors(sfno_run, ns_small, tmp_path, capsys):
    common = ["--run", str(sfno_run), "--out", str(tmp_path / "out.h5")]
    assert "no such dataset file" in _error(capsys, *common, "--data", str(tmp_path / "none.h5"))
    assert "--samples 13 must be 1..12" in _error(capsys, *common, "--data", str(ns_small),
                                                   "--samples", "13")
    assert "not a run directory" in _error(capsys, "--run", str(tmp_path), "--data",
                                           str(ns_small), "--out", str(tmp_path / "o.h5"))
    # A trajectory file of another PDE: ν, forcing and dt must come from flags.
    foreign = tmp_path / "heat.h5"
    with DatasetWriter.create(foreign, n_samples=1, fields={"w": (15, 32, 32)}, n_params=1,
                              dtype="float32", attrs={"pde": "heat", "recipe": "pde: heat\n"}) as w:
        w.write([0], {"w": np.zeros((1, 15, 32, 32))}, np.zeros((1, 1)), iterations=[0],
                matvecs=[0], residual=[0.0], seconds=[0.0])
        w.finish(rtol=1.0)
    message = _error(capsys, *common, "--data", str(foreign))
    assert "--nu --forcing --dt" in message and "heat" in message
    (tmp_path / "out.h5").write_text("")
    assert "already exists" in _error(capsys, *common, "--data", str(ns_small))


def test_models_and_tasks_that_cannot_be_refined():
    cfg = from_mapping({"name": "r", "data": {"path": "d.h5", "inputs": ["w"], "targets": ["w"],
                                              "time": {"input": 4, "output": 2, "mode": "rollout"}},
                        "model": {"name": "fno"}}, where="test")
    # Abstract models (nnx.eval_shape): only their type and shape matter here.
    fno2d, fno3d, sfno = (nnx.eval_shape(build) for build in (
        lambda: FNO(4, 1, (8, 8), 4), lambda: FNO(4, 1, (8, 8, 4), 4),
        lambda: SFNO(4, 2, n_modes=(4, 4, 3), hidden_channels=4, n_layers=2)))
    with pytest.raises(UserError, match="space-time mode"):
        check_refinable(cfg, fno2d, "fd", "run r")
    with pytest.raises(UserError, match="data.time.mode: spacetime"):
        check_refinable(cfg, fno3d, "fd", "run r")
    with pytest.raises(UserError, match="data.time.mode: direct"):
        check_refinable(cfg, sfno, "spectral", "run r")
