"""Config loading: typed values, helpful errors for every kind of mistake, overrides."""

import pathlib

import pytest
import yaml

from nopx import config
from nopx.errors import UserError

MINIMAL = {"name": "t", "data": {"path": "d.h5"}, "model": {"name": "fno", "n_modes": [8, 8]}}


def _write(tmp_path: pathlib.Path, data: dict) -> pathlib.Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _error(tmp_path: pathlib.Path, data: dict, overrides=()) -> str:
    with pytest.raises(UserError) as info:
        config.load(_write(tmp_path, data), overrides)
    return str(info.value)


def test_minimal_config_gets_defaults(tmp_path):
    cfg = config.load(_write(tmp_path, MINIMAL))
    assert cfg.model.name == "fno" and cfg.model.kwargs == {"n_modes": [8, 8]}
    assert cfg.optim.lr == 1e-3 and cfg.train.batch_size == 16
    assert cfg.run_dir == pathlib.Path("runs/t")


def test_misspelled_key_names_path_and_suggests(tmp_path):
    message = _error(tmp_path, {**MINIMAL, "optim": {"learning_rat": 1.0}})
    assert "optim.learning_rat" in message and "exp.yaml" in message
    message = _error(tmp_path, {**MINIMAL, "optim": {"lrr": 1.0}})
    assert "did you mean 'lr'" in message
    message = _error(tmp_path, {**MINIMAL, "trian": {}})
    assert "did you mean 'train'" in message


def test_wrong_types_and_impossible_values(tmp_path):
    assert "train.epochs: expected an integer" in _error(tmp_path, {**MINIMAL, "train": {"epochs": "many"}})
    assert "optim.lr: must be positive" in _error(tmp_path, {**MINIMAL, "optim": {"lr": -0.1}})
    assert "missing required key 'loss.name'" in _error(tmp_path, {**MINIMAL, "loss": {"s": 1}})
    assert "missing required key 'data.path'" in _error(tmp_path, {**MINIMAL, "data": {}})
    assert "must be a section" in _error(tmp_path, {**MINIMAL, "optim": 3})


def test_overrides_coerce_types(tmp_path):
    cfg = config.load(_write(tmp_path, MINIMAL),
                      ["optim.lr=3e-4", "train.epochs=7", "model.n_modes=[4,4]", "data.normalize=false"])
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.train.epochs == 7
    assert cfg.model.kwargs["n_modes"] == [4, 4] and cfg.data.normalize is False
    assert "optim.lrr" in _error(tmp_path, MINIMAL, ["optim.lrr=1"])
    assert "key.path=value" in _error(tmp_path, MINIMAL, ["optim.lr"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(UserError, match="no such config file"):
        config.load(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        config.load(bad)


def test_dump_round_trips(tmp_path):
    cfg = config.load(_write(tmp_path, {**MINIMAL, "optim": {"schedule": "step"}}))
    again = config.from_mapping(yaml.safe_load(config.dump(cfg)), where="dump")
    assert again == cfg


@pytest.mark.parametrize("path", sorted(pathlib.Path(__file__).parents[1].glob("experiments/*.yaml")))
def test_shipped_experiments_parse(path):
    cfg = config.load(path)
    assert cfg.data.generate is None or pathlib.Path(path.parents[1], cfg.data.generate).exists()
