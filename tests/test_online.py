"""Online training: the sample stream, the buffer policy, reproducible runs and exact resume."""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import numpy as np
import pytest
import yaml

from nopx import config, datagen, training
from nopx.datagen.stream import SampleStream
from nopx.errors import UserError
from nopx.training import loop
from nopx.training.data import load_splits
from nopx.training.dataset import ensure_dataset
from nopx.training.online import OnlineSplit

RECIPE = {"pde": "darcy", "seed": 3, "samples": 32, "grid": {"n": 16},
          "darcy": {"modes": 8}, "solver": {"chain": 4}}


def _recipe_file(tmp_path: pathlib.Path, **changes) -> pathlib.Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**RECIPE, "out": str(tmp_path / "d.h5"), **changes}))
    return path


def _config(tmp_path: pathlib.Path, **data) -> config.Config:
    """24 + 8 samples in the file (4 validate, 20 train: 5 steps of 4 per epoch); online."""
    raw = {"name": "online", "seed": 1,
           "data": {"path": str(tmp_path / "d.h5"), "generate": str(_recipe_file(tmp_path)),
                    "n_train": 24, "n_val": 4, "n_test": 8, "online": True,
                    "online_buffer": 12, "online_workers": 0, "online_per_step": 2, **data},
           "model": {"name": "fno", "n_modes": [4, 4], "hidden_channels": 4, "n_layers": 1},
           "train": {"epochs": 3, "batch_size": 4, "run_dir": str(tmp_path / "run")},
           "checkpoint": {"every_steps": 3}}
    return config.from_mapping(raw, where="test")


def _file_arrays(path: pathlib.Path) -> dict[str, np.ndarray]:
    with datagen.open_dataset(path) as data:
        return {name: data.read_range(name, 0, data.n_samples) for name in data.fields}


def test_a_stream_holds_the_samples_a_file_holds_in_and_out_of_process(tmp_path):
    recipe = datagen.recipe_from_mapping({**RECIPE, "first_index": 40, "samples": 8,
                                          "out": str(tmp_path / "f.h5")}, where="test")
    expected = _file_arrays(datagen.generate(recipe))
    for workers in (0, 1):
        with SampleStream(recipe, 40, fields=("a", "u"), workers=workers) as stream:
            stream.seek(0)
            blocks = sorted((stream.next() for _ in range(2)), key=lambda b: b.indices[0])
        assert np.concatenate([b.indices for b in blocks]).tolist() == list(range(40, 48))
        for name in ("a", "u"):
            np.testing.assert_array_equal(np.concatenate([b.fields[name] for b in blocks]),
                                          expected[name], err_msg=f"{name}, workers={workers}")


def test_the_buffer_policy_and_a_restored_split_draws_the_same(tmp_path):
    cfg = _config(tmp_path)
    ensure_dataset(cfg.data, log=lambda _: None)
    splits = load_splits(cfg.data, seed=cfg.seed)
    online = OnlineSplit(cfg.data, splits.train, seed=1, batch_size=4, log=lambda _: None)
    assert len(online) == 20 and online.start == 32  # after the file: never a val/test sample
    x, y = next(online.batches(12))  # the first fill, in slot order, draws nothing
    assert online.slot_index.tolist() == list(range(32, 44)) and x.shape == (12, 16, 16, 1)
    assert online.metrics() == {"train/online_samples": 12, "train/online_seen": 0,
                                "train/online_reuse": 0.0}
    list(online.batches(4, np.arange(12), drop_last=True))  # 3 steps, 2 new samples before each
    assert online.next_index == 32 + 12 + 6 and online.step == 3
    assert sorted(online.slot_index.tolist()) == list(range(38, 50))
    state, held = online.state(), online.slot_index.copy()
    after = list(online.batches(4, np.arange(8), drop_last=True))

    again = OnlineSplit(cfg.data, splits.train, seed=1, batch_size=4, log=lambda _: None)
    again.restore(state)
    np.testing.assert_array_equal(again.slot_index, held)
    for (x1, y1), (x2, y2) in zip(after, again.batches(4, np.arange(8), drop_last=True), strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert again.metrics() == online.metrics()
    assert online.metrics()["train/online_seen"] <= 20 and online.metrics()["train/online_reuse"] >= 1
    for split in (online, again):
        split.close()


class _Stop(Exception):
    pass


def _params(run_dir: pathlib.Path) -> list[np.ndarray]:
    return [np.asarray(p) for p in jax.tree.leaves(training.load_run(run_dir, which="latest").params)]


def _run(cfg: config.Config) -> dict:
    """Train ``cfg``; its final metrics without the timings."""
    return {k: v for k, v in training.train_and_evaluate(cfg).items() if "seconds" not in k}


def test_an_online_run_logs_what_it_streamed(tmp_path):
    cfg = _config(tmp_path)
    _run(cfg)
    epochs = [e for e in loop.MetricsLog(cfg.run_dir / "metrics.jsonl").read() if "train/loss" in e]
    assert [e["train/online_samples"] for e in epochs] == [12 + 10, 12 + 20, 12 + 30]
    assert epochs[-1]["train/online_reuse"] * epochs[-1]["train/online_seen"] == pytest.approx(60)
    assert all("val/rel_l2" in e for e in epochs)


@pytest.mark.slow
def test_an_online_run_resumes_exactly(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    straight = _run(cfg)
    reference = _params(cfg.run_dir)
    cut = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, run_dir=str(tmp_path / "cut")))
    real, steps = loop.fault_point, []

    def stop_at_step_8(name: str) -> None:
        steps.extend([name] if name == "train_step" else [])
        if len(steps) == 8:
            raise _Stop
        real(name)

    monkeypatch.setattr(loop, "fault_point", stop_at_step_8)
    with pytest.raises(_Stop):
        training.train_and_evaluate(cut)
    monkeypatch.setattr(loop, "fault_point", real)
    resumed = {k: v for k, v in training.train_and_evaluate(cut, resume=True).items()  # from step 6
               if "seconds" not in k}
    assert resumed == straight
    for a, b in zip(reference, _params(cut.run_dir), strict=True):
        np.testing.assert_array_equal(a, b)


def test_producer_processes_refill_the_buffer(tmp_path):
    cfg = _config(tmp_path, online_workers=1)
    ensure_dataset(cfg.data, log=lambda _: None)
    online = OnlineSplit(cfg.data, load_splits(cfg.data, seed=1).train, seed=1, batch_size=4,
                         log=lambda _: None)
    try:
        next(online.batches(12))
        assert online.slot_index.tolist() == list(range(32, 44))  # the first fill, whatever the timing
        deadline = time.monotonic() + 60
        while online.admitted <= 12 and time.monotonic() < deadline:
            list(online.batches(4, np.arange(4), drop_last=True))
            time.sleep(0.05)
        assert online.admitted > 12 and online.slot_index.min() >= 32
        assert online.next_index == online.slot_index.max() + 1
    finally:
        online.close()


def test_online_mistakes_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="data.online: .*data.generate"):
        config.from_mapping({"name": "x", "data": {"path": "d.h5", "online": True},
                             "model": {"name": "fno"}}, where="test")
    with pytest.raises(UserError, match="data.online_workers: must be >= 0"):
        config.from_mapping({"name": "x", "data": {"path": "d.h5", "online_workers": -1},
                             "model": {"name": "fno"}}, where="test")
    cfg = _config(tmp_path)
    ensure_dataset(cfg.data, log=lambda _: None)
    train = load_splits(cfg.data, seed=1).train
    with pytest.raises(UserError, match="online_buffer 12 holds fewer samples than train.batch_size 16"):
        OnlineSplit(cfg.data, train, seed=1, batch_size=16)
    _recipe_file(tmp_path, darcy={"modes": 6})
    with pytest.raises(UserError, match="darcy.modes differs from the recipe that made data.path"):
        OnlineSplit(cfg.data, train, seed=1, batch_size=4)
