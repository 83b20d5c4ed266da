"""Typed configuration: YAML files parsed into frozen dataclasses, validated up front.

Every mistake a user can make in a config file is reported before any work starts, as a
:class:`~nopx.errors.UserError` naming the file, the key path and the fix: an unknown key
gets the closest valid name suggested, a wrong type says what was expected, an impossible
value (a negative learning rate, more modes than the grid holds) says which bound it broke.

The generic pieces (:func:`read_yaml`, :func:`apply_overrides`, :func:`parse_dataclass`)
also parse datagen recipes; :func:`load` parses an experiment config (:class:`Config`).

>>> cfg = parse_dataclass(OptimConfig, {"lr": "3e-4"}, where="demo.yaml")
>>> cfg.lr
0.0003
>>> parse_dataclass(OptimConfig, {"lrr": 1.0}, where="demo.yaml")
Traceback (most recent call last):
...
nopx.errors.UserError: demo.yaml: unknown key 'lrr'; did you mean 'lr'? (valid keys: optimizer, lr, weight_decay, schedule, warmup_steps, step_size, gamma, final_lr_ratio, grad_clip, group_lr)
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from nopx.config.data import DataConfig, TimeConfig
from nopx.config.mesh import MeshConfig
from nopx.config.model import LossConfig, ModelConfig
from nopx.config.optim import OptimConfig
from nopx.config.parsing import parse_dataclass, to_dict
from nopx.config.stages import StageConfig
from nopx.config.train import CheckpointConfig, TrainConfig
from nopx.config.yaml_io import apply_overrides, read_yaml
from nopx.errors import UserError

__all__ = [
    "Config",
    "DataConfig",
    "TimeConfig",
    "ModelConfig",
    "LossConfig",
    "OptimConfig",
    "TrainConfig",
    "CheckpointConfig",
    "MeshConfig",
    "StageConfig",
    "read_yaml",
    "apply_overrides",
    "parse_dataclass",
    "to_dict",
    "load",
    "from_mapping",
    "dump",
]


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole experiment: one YAML file.

    ``imports`` names user modules (dotted names or ``.py`` paths, relative ones taken from
    the config's folder) imported before models and losses are looked up by name.
    ``init_from`` names a run directory whose best weights start this run (fine-tuning:
    parameters of the same path and shape are copied, the others listed and kept fresh).
    """

    name: str
    data: DataConfig
    model: ModelConfig
    seed: int = 0
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    stages: tuple[StageConfig, ...] = ()
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    imports: tuple[str, ...] = ()
    init_from: str | None = None

    @property
    def run_dir(self) -> pathlib.Path:
        return pathlib.Path(self.train.run_dir or f"runs/{self.name}")


def load(path: str | pathlib.Path, overrides: Sequence[str] = ()) -> Config:
    """Load an experiment config from YAML with ``--set`` style overrides applied.

    Relative ``data.path``/``data.generate`` stay relative to the current directory (the
    README runs everything from the repository root); relative ``imports`` paths are taken
    from the config's folder and stored absolute.
    """
    from nopx.imports import resolve

    raw = apply_overrides(read_yaml(path), overrides)
    cfg = from_mapping(raw, where=str(path))
    return dataclasses.replace(cfg, imports=resolve(cfg.imports, base=pathlib.Path(path).parent))


def _named_section(raw: dict[str, Any], key: str, where: str, example: str) -> None:
    """``{name: x, a: 1}`` → ``{name: x, kwargs: {a: 1}}`` for the sections whose extra keys
    are the arguments of a registered constructor (``model``, ``loss``)."""
    section = raw.get(key)
    if not isinstance(section, Mapping):
        return
    section = dict(section)
    kwargs = {k: v for k, v in section.items() if k not in ("name", "kwargs")}
    kwargs.update(section.get("kwargs") or {})
    if "name" not in section:
        raise UserError(f"{where}: missing required key '{key}.name'; name a registered "
                        f"{key}, e.g. {example}")
    raw[key] = {"name": section["name"], "kwargs": kwargs}


def from_mapping(raw: Mapping[str, Any], *, where: str) -> Config:
    """Parse an already-read config mapping (``model``/``loss`` keep free-form kwargs)."""
    raw = dict(raw)
    _named_section(raw, "model", where, "model: {name: fno, n_modes: [12, 12]}")
    _named_section(raw, "loss", where, "loss: {name: sobolev, s: -1}")
    return parse_dataclass(Config, raw, where=where)


def dump(config: Config) -> str:
    """The config as YAML, model and loss arguments inlined, as a user would write it."""
    data = to_dict(config)
    data["model"] = {"name": config.model.name, **to_dict(config.model.kwargs)}
    data["loss"] = {"name": config.loss.name, **to_dict(config.loss.kwargs)}
    return yaml.safe_dump(data, sort_keys=False)
