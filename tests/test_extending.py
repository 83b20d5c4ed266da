"""User code through the CLI: ``examples/custom_operator`` trains and evaluates by name.

The example registers a model (``gated_fno``), a loss (``relative_l1``) and a PDE family
(``screened_poisson``) in its own files; the config and the recipe import them.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from helpers import run_nopx
from nopx import config, losses
from nopx.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "custom_operator"


def test_custom_operator_loss_and_family_train_and_evaluate(tmp_path):
    run_dir = tmp_path / "run"
    result = run_nopx("train", "--config", str(EXAMPLE / "experiment.yaml"),
                      "--set", f"data.path={tmp_path / 'sp.h5'}", "--set", f"train.run_dir={run_dir}",
                      "--set", "data.n_train=40", "--set", "data.n_test=10",
                      "--set", "train.epochs=2", "--set", "model.hidden_channels=8",
                      "--set", "model.n_modes=[6,6]", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "gated_fno" in result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0 < summary["test"]["test/rel_l2"] < 1

    # eval re-imports the user modules recorded in the run, from any folder, and
    # re-solves the test samples at another resolution with the user's PDE family.
    result = run_nopx("eval", "--run", str(run_dir), "--resolution", "24", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "24x24" in result.stdout


def test_a_failing_import_is_a_user_error(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\nimports: [./broken.py, not_a_module_xyz]\n"
                   "data: {path: d.h5}\nmodel: {name: fno}\n")
    result = run_nopx("train", "--config", str(cfg))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"cannot import '{broken}' (RuntimeError: boom)" in result.stderr


def test_relative_import_paths_are_stored_absolute(tmp_path):
    cfg_path = tmp_path / "sub" / "c.yaml"
    cfg_path.parent.mkdir()
    cfg_path.write_text("name: x\nimports: [./ops.py, json]\ndata: {path: d.h5}\n"
                        "model: {name: fno}\nloss: {name: sobolev, s: -1}\n")
    cfg = config.load(cfg_path)
    assert cfg.imports == (str(tmp_path / "sub" / "ops.py"), "json")
    assert cfg.loss.kwargs == {"s": -1}
    assert config.load(cfg_path, ["loss.name=relative_l2"]).loss.kwargs == {"s": -1}


def test_unknown_loss_names_the_registry():
    from nopx.training.build import build_loss

    with pytest.raises(UserError, match="did you mean 'sobolev'"):
        build_loss("sobolv", {}, where="c.yaml")
    with pytest.raises(UserError, match="loss.domian is not an argument of loss 'sobolev'; "
                                        "did you mean 'domain'"):
        build_loss("sobolev", {"domian": 1}, where="c.yaml")
    assert {"relative_l2", "h1", "sobolev"} <= set(losses.available_losses())
