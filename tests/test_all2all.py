"""All2all (Poseidon-style) time-conditioned training and lead-time evaluation."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from nopx.config import TimeConfig, from_mapping
from nopx.errors import UserError
from nopx.training.all2all import PairSplit, pair_table, snapshot_slices
from nopx.training.time_eval import lead_time_errors, predict_at, rollout_with_step


def test_pairs_cover_every_ordered_pair_and_the_options_restrict_them():
    all_pairs = pair_table(8, TimeConfig(mode="all2all"), [0, 1])
    assert len(all_pairs) == 2 * 36                        # Poseidon's 8 snapshots: 36 pairs
    first, last = all_pairs[:, 1], all_pairs[:, 2]
    assert (last >= first).all() and len(set(map(tuple, all_pairs[:36, 1:]))) == 36
    strict = pair_table(8, TimeConfig(mode="all2all", include_zero=False, max_lead=2), [0])
    assert set(strict[:, 2] - strict[:, 1]) == {1, 2}
    drawn = TimeConfig(mode="all2all", pairs=5, pair_seed=3)
    a, b = pair_table(8, drawn, [4, 9]), pair_table(8, drawn, [9])
    assert len(a) == 10 and (a[5:, 1:] == b[:, 1:]).all()  # a trajectory keeps its pairs
    assert snapshot_slices(TimeConfig(mode="all2all", start=1, stride=3), 12).tolist() == [1, 4, 7, 10]


@pytest.mark.parametrize("time, message", [
    ({"mode": "rollout", "stride": 2}, "stride: applies to mode: all2all only"),
    ({"mode": "all2all", "input": 2}, "input must be 1"),
    ({"mode": "all2all", "time_scale": 0}, "time_scale: must be positive"),
])
def test_config_refuses_misplaced_all2all_keys(time, message):
    raw = {"name": "x", "data": {"path": "d.h5", "inputs": ["w"], "targets": ["w"], "time": time},
           "model": {"name": "fno"}}
    with pytest.raises(UserError, match=message):
        from_mapping(raw, where="test")


def test_pair_split_appends_the_scaled_lead_time(ns_small):
    split = PairSplit(ns_small, ["w"], [0, 1], TimeConfig(mode="all2all", stride=2, output=7))
    assert split.times.tolist() == [0, 2, 4, 6, 8, 10, 12, 14] and split.time_scale == 14
    assert len(split) == 2 * 36
    x, y = split.read(np.arange(len(split)))
    row, first, last = split.pairs.T
    assert x.shape == (72, 32, 32, 2) and y.shape == (72, 32, 32, 1)
    np.testing.assert_allclose(x[:, 5, 7, 1], 2 * (last - first) / 14, rtol=1e-6)
    np.testing.assert_array_equal(x[:, ..., 0], split.snapshots[row, first, ..., 0])
    x_norm, y_norm = split.fit_normalizers()
    assert x_norm.mean[-1] == 0 and x_norm.std[-1] == 1 and y_norm.mean.shape == (1,)


def test_models_declare_whether_they_take_the_lead_time():
    from nopx.training import tasks

    data = from_mapping({"name": "x", "data": {"path": "d.h5", "inputs": ["u", "v"],
                                               "targets": ["u", "v"], "time": {"mode": "all2all"}},
                         "model": {"name": "fno"}}, where="test").data
    assert tasks.takes_time("scot", {}) and not tasks.takes_time("scot", {"time_conditioning": False})
    assert not tasks.takes_time("fno", {})
    assert tasks.channels(data, 1, with_time=True) == (2, 2)      # scOT: model(x, t)
    assert tasks.channels(data, 1, with_time=False) == (3, 2)     # FNO: t as a channel
    x_norm, y_norm = tasks.identity_normalizers(data)
    assert x_norm.mean.shape == (3,) and y_norm.mean.shape == (2,)


def test_direct_and_stepped_predictions_agree_for_an_exact_semigroup():
    decay = lambda x, t: x * jnp.exp(-t)[:, None, None, None]
    snapshots = np.exp(-np.arange(5.0))[None, :, None, None, None] * np.ones((3, 5, 4, 4, 1))
    errors = lead_time_errors(decay, snapshots, np.arange(5.0), batch_size=2)
    assert errors["lead_times"] == [1.0, 2.0, 3.0, 4.0]
    assert max(errors["rel_l2_direct"] + errors["rel_l2_rollout"]) < 1e-6
    between = predict_at(decay, jnp.ones((1, 4, 4, 1)), [0.5])[0, 0, 0, 0, 0]
    assert abs(float(between) - np.exp(-0.5)) < 1e-6
    assert rollout_with_step(decay, jnp.ones((1, 4, 4, 1)), 0.25, 3).shape == (1, 3, 4, 4, 1)


@pytest.mark.parametrize("model, in_channels", [
    pytest.param({"name": "scot", "hidden_channels": 8, "depths": [1, 1], "n_heads": [2, 2],
                  "skip_blocks": [1, 0], "patch_size": 4, "window_size": 4}, 1,  # model(x, t)
                 marks=pytest.mark.slow),   # ~1 min: compiling scOT's train step
    ({"name": "fno", "n_modes": [6, 6], "hidden_channels": 6, "n_layers": 1}, 2),  # t a channel
])
def test_all2all_run_trains_and_eval_reports_error_against_lead_time(tmp_path, ns_small, model,
                                                                     in_channels):
    from nopx.training import evaluate_run, load_run, train_and_evaluate

    name = model["name"]
    cfg = from_mapping({
        "name": name,
        "data": {"path": str(ns_small), "inputs": ["w"], "targets": ["w"], "n_train": 6,
                 "n_test": 2, "time": {"mode": "all2all", "stride": 3, "output": 4,
                                       "pairs": 8}},
        "model": model, "train": {"epochs": 1, "batch_size": 8, "run_dir": str(tmp_path / name)}},
        where="test")
    train_and_evaluate(cfg)
    metrics = evaluate_run(tmp_path / name)
    assert metrics["lead_times"] == [3.0, 6.0, 9.0, 12.0]
    for kind in ("direct", "rollout"):
        assert len(metrics[f"rel_l2_{kind}"]) == 4 and all(0 < e < 10 for e in metrics[f"rel_l2_{kind}"])
    saved = json.loads((tmp_path / name / "eval.json").read_text())
    assert next(iter(saved.values()))["pairs"] == 2 * 8
    kwargs = load_run(tmp_path / name).meta["model"]["kwargs"]
    assert kwargs["in_channels"] == in_channels and kwargs["out_channels"] == 1
