"""Poseidon checkpoints to nopx: the converted scOT reproduces the reference outputs.

The fixture ``tests/data/poseidon_tiny`` (made by its ``make.py`` with Poseidon's own code
and torch, see there) holds a small random reference scOT saved by ``save_pretrained`` and
its output on a fixed input (``plain/``: the same without time conditioning); nothing
here needs torch.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from helpers import run_nopx
from nopx.convert_poseidon import load_poseidon, read_torch_bin
from nopx.errors import UserError

FIXTURE = pathlib.Path(__file__).parent / "data" / "poseidon_tiny"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    """``x (B, H, W, C)``, ``t (B,)``, ``y (B, H, W, C)``: channels-last."""
    io = np.load(FIXTURE / "io.npz")
    return {"x": io["x"].transpose(0, 2, 3, 1), "t": io["t"], "y": io["y"].transpose(0, 2, 3, 1)}


def _assert_close(pred, reference: dict[str, np.ndarray]) -> None:
    target = reference["y"]
    np.testing.assert_allclose(np.asarray(pred), target, rtol=1e-4,
                               atol=1e-4 * np.abs(target).max())


@pytest.mark.slow  # one scOT compile through the CLI (61 s); the mapping is checked in-process below
def test_converted_run_reproduces_poseidon(tmp_path, reference):
    from nopx.training.evaluate import load_run
    from nopx.training.time_eval import predict_at, run_predictor

    # One compile of the converted scOT (~half a minute of CPU): conversion, run directory
    # and numerics in one test.
    result = run_nopx("convert", "--format", "poseidon", str(FIXTURE), str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    run = load_run(tmp_path / "run")
    assert run.config.data.time.mode == "all2all" and run.meta["time_scale"] == 1.0
    assert run.meta["model"]["kwargs"]["depths"] == [2, 1, 2]
    predict = run_predictor(run)
    _assert_close(predict(jnp.asarray(reference["x"]), jnp.asarray(reference["t"])), reference)
    # Any lead time, between the recorded ones too: one call per time (same batch: no new
    # compile). Sample 0 at its own lead time is the reference again.
    at = predict_at(predict, jnp.asarray(reference["x"]), [float(reference["t"][0]), 0.5])
    assert at.shape == (2, 2, *reference["y"].shape[1:]) and np.isfinite(np.asarray(at)).all()
    _assert_close(at[:1, 0], {"y": reference["y"][:1]})


def test_conditioned_checkpoint_reproduces_poseidon(reference):
    # In-process, without the CLI's run directory and jit (the slow test above has both).
    kwargs, model = load_poseidon(FIXTURE)
    assert kwargs["time_conditioning"] is True
    _assert_close(model(jnp.asarray(reference["x"]), jnp.asarray(reference["t"])), reference)


def test_unconditioned_checkpoint_maps_plain_layer_norms():
    # use_conditioning = false: every norm is a plain LayerNorm (weight/bias, no t-MLPs);
    # 16² grid, two stages, 2 channels in and 1 out (fixture: make.py, folder plain/).
    folder = FIXTURE / "plain"
    io = np.load(folder / "io.npz")
    kwargs, model = load_poseidon(folder)
    assert kwargs["time_conditioning"] is False
    pred = model(jnp.asarray(io["x"].transpose(0, 2, 3, 1)), jnp.asarray(io["t"]))
    _assert_close(pred, {"y": io["y"].transpose(0, 2, 3, 1)})


def test_torch_bin_reader_rebuilds_views_without_torch():
    tensors = read_torch_bin(FIXTURE / "tiny_state.bin")
    base = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(tensors["matrix"], base)
    np.testing.assert_array_equal(tensors["transposed"], base.T)
    np.testing.assert_array_equal(tensors["param"], base[1])
    assert tensors["index"].tolist() == [3, 1, 2]


def _broken(tmp_path: pathlib.Path, **changes) -> pathlib.Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(FIXTURE, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


@pytest.mark.parametrize("changes, message", [
    ({"residual_model": "resnet"}, "residual_model = 'resnet'"),
    ({"embed_dim": 16}, "config.json does not match the weights"),
    ({"depths": [2, 1]}, "one entry per stage"),
    ({"depths": [2, 1], "num_heads": [2, 2], "skip_connections": [1, 1]}, "does not match"),
])
def test_mismatched_checkpoints_are_user_errors(tmp_path, changes, message):
    with pytest.raises(UserError, match=message):
        load_poseidon(_broken(tmp_path, **changes))


def test_cli_bad_input_exits_2_naming_the_file(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_nopx("convert", "--format", "poseidon", str(tmp_path / "empty"), str(tmp_path / "o"))
    assert result.returncode == 2 and "no config.json" in result.stderr
    assert "Traceback" not in result.stderr
