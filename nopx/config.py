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
import difflib
import pathlib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml

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


# --------------------------------------------------------------------------- generic parts


def read_yaml(path: str | pathlib.Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path``; a missing file or bad YAML is a :class:`UserError`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such config file; check the path (relative paths are "
                        f"taken from the current directory {pathlib.Path.cwd()})")
    try:
        data = yaml.load(path.read_text(), Loader=_StrictLoader)
    except _DuplicateKey as err:
        raise UserError(f"{path}: {err}; keep one (YAML would silently drop the first)") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({err}); fix the syntax at the line shown") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping of sections (key: value), "
                        f"found {type(data).__name__}")
    return data


class _DuplicateKey(yaml.YAMLError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key written twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise _DuplicateKey(f"key {key!r} appears twice (lines {seen[key]} and {line})")
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def apply_overrides(mapping: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``mapping`` with ``"a.b=value"`` overrides applied.

    Values are parsed as YAML scalars/flow collections (``lr=1e-3``, ``n_modes=[12,12]``),
    intermediate mappings are created as needed.

    >>> apply_overrides({"optim": {"lr": 1.0}}, ["optim.lr=0.5", "train.epochs=3"])
    {'optim': {'lr': 0.5}, 'train': {'epochs': 3}}
    """
    result = _deep_copy(mapping)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
            raise UserError(f"--set {item!r}: expected key.path=value, e.g. --set optim.lr=3e-4")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = result
        parts = key.strip().split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise UserError(f"--set {item!r}: '{where}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return result


def _deep_copy(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in mapping.items()}


def parse_dataclass(cls: type, mapping: Any, *, where: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``mapping``, checking keys and types recursively.

    Args:
      cls: a dataclass type whose fields carry type hints (nested dataclasses, ``int``,
        ``float``, ``str``, ``bool``, ``Literal[...]``, ``X | None``, ``tuple[X, ...]``,
        ``list[X]``, ``dict[str, Any]``).
      mapping: the parsed YAML for this section.
      where: the file name (or other origin) used in messages.
      prefix: the key path of this section, for messages.

    A ``ValueError("key: message")`` raised by the dataclass ``__post_init__`` becomes a
    :class:`UserError` naming ``where`` and the full key path.
    """
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise UserError(f"{where}: '{prefix.rstrip('.') or '(top level)'}' must be a section "
                        f"(a mapping of keys), got {mapping!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in mapping.items():
        if key not in fields:
            raise UserError(_unknown_key_message(where, prefix, str(key), list(fields)))
        kwargs[key] = _coerce(value, hints[key], where=where, key=prefix + key)
    for name, field in fields.items():
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        if required and name not in kwargs:
            raise UserError(f"{where}: missing required key '{prefix}{name}'; add it to the file")
    try:
        return cls(**kwargs)
    except ValueError as err:
        message = str(err)
        head, sep, tail = message.partition(": ")
        if sep and head in fields:
            raise UserError(f"{where}: {prefix}{head}: {tail}") from None
        raise UserError(f"{where}: {prefix.rstrip('.') or 'config'}: {message}") from None


def _unknown_key_message(where: str, prefix: str, key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{where}: unknown key '{prefix}{key}'{hint} (valid keys: {', '.join(valid)})"


def _coerce(value: Any, hint: Any, *, where: str, key: str) -> Any:
    """Check ``value`` against type ``hint``, converting the safe cases (int→float, str→float)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where=where, key=key)
            except UserError as err:
                errors.append(str(err))
        raise UserError(errors[-1])
    if dataclasses.is_dataclass(hint):
        return parse_dataclass(hint, value, where=where, prefix=key + ".")
    if origin is Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint_text = f"; did you mean '{close[0]}'?" if close else ""
            choices = ", ".join(repr(a) for a in args)
            raise UserError(f"{where}: {key}: {value!r} is not one of {choices}{hint_text}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: {key}: expected a list, got {value!r}")
        item_hint = args[0] if args else Any
        items = [_coerce(v, item_hint, where=where, key=f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise UserError(f"{where}: {key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{where}: {key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{where}: {key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "1e-3" as a string
            except ValueError:
                pass
        raise UserError(f"{where}: {key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise UserError(f"{where}: {key}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # a bug in nopx, not input


def to_dict(obj: Any) -> Any:
    """Turn a (nested) config dataclass into plain YAML-able data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _is_regex(pattern: Any) -> bool:
    try:
        re.compile(pattern)
    except (re.error, TypeError):
        return False
    return True


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ValueError(f"{key}: {message}")


# --------------------------------------------------------------------------- experiment config


@dataclasses.dataclass(frozen=True)
class TimeConfig:
    """Learn a trajectory field ``(N, T, *spatial)``: ``input`` slices in, ``output`` out.

    The window starts at slice ``start``; ``output`` defaults to every remaining slice.
    ``mode`` says how a model consumes the window:

    - ``direct``: the input slices are channels, the model returns ``output`` channels
      (SFNO; any grid model);
    - ``rollout``: the model maps ``input`` slices to the next one and is applied
      autoregressively over ``output`` steps (FNO-2D of the FNO paper);
    - ``spacetime``: a space-time model on ``(B, *spatial, output, input)`` (FNO-3D);
    - ``all2all``: Poseidon's time-conditioned training (:mod:`nopx.training.all2all`). The
      snapshots are slices ``start, start + stride, ...``, ``output`` of them after the
      first (default: all that fit); every ordered pair ``(i, j)``, ``j ≥ i`` (``j > i``
      with ``include_zero: false``; ``j − i ≤ max_lead`` snapshots when set) is a sample
      ``u(t_i) → u(t_j)`` with the lead time ``(t_j − t_i) / time_scale``. ``pairs`` keeps
      that many pairs per trajectory, drawn with ``pair_seed``. ``time_scale`` defaults to
      the time the snapshots span, so lead times lie in ``[0, 1]``. ``input`` is 1 (one
      state in); several fields may be learned together (``inputs == targets``).

    ``input`` defaults to 10 (1 in ``all2all``). The all2all keys are refused in the other
    modes.
    """

    input: int | None = None
    output: int | None = None
    start: int = 0
    mode: Literal["direct", "rollout", "spacetime", "all2all"] = "rollout"
    stride: int = 1
    max_lead: int | None = None
    include_zero: bool = True
    pairs: int | None = None
    pair_seed: int = 0
    time_scale: float | None = None

    def __post_init__(self) -> None:
        all2all = self.mode == "all2all"
        if self.input is None:  # frozen: the resolved default is written once, here
            object.__setattr__(self, "input", 1 if all2all else 10)
        _require(self.input > 0, "input", f"must be positive, got {self.input}")
        _require(self.output is None or self.output > 0, "output", "must be positive")
        _require(self.start >= 0, "start", "must be >= 0")
        if not all2all:
            given = [key for key, default in _ALL2ALL_DEFAULTS.items()
                     if getattr(self, key) != default]
            _require(not given, given[0] if given else "", f"applies to mode: all2all only; "
                     f"remove it or set mode: all2all (mode is {self.mode})")
            return
        _require(self.input == 1, "input", f"all2all maps one snapshot to one: input must be 1, "
                 f"got {self.input}")
        _require(self.stride > 0, "stride", f"must be positive, got {self.stride}")
        _require(self.max_lead is None or self.max_lead > 0, "max_lead", "must be positive")
        _require(self.pairs is None or self.pairs > 0, "pairs", "must be positive")
        _require(self.time_scale is None or self.time_scale > 0, "time_scale", "must be positive")


_ALL2ALL_DEFAULTS = {"stride": 1, "max_lead": None, "include_zero": True, "pairs": None,
                     "pair_seed": 0, "time_scale": None}


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the dataset is and how it is split.

    ``inputs``/``targets`` name HDF5 fields; each becomes one channel. With ``time`` set,
    one trajectory field is both input and target (see :class:`TimeConfig`). The first
    ``n_train`` samples are the training pool and the last ``n_test`` the test split.
    ``n_val`` of the pool (default: 10% of ``n_train``), drawn by the run's seed, form the
    validation split that selects the best checkpoint; the rest train. ``generate`` names a datagen
    recipe used to create ``path`` when it does not exist. ``subsample`` keeps every k-th
    grid point per spatial axis (train at 64² on data stored at 256², as the FNO papers do).
    ``format`` names the file's layout, read in place: ``nopx``, ``fno-mat``, ``pdebench``,
    ``the-well`` or ``auto`` (detected; see :mod:`nopx.datagen.formats`).

    ``online: true`` trains on fresh samples of the ``generate`` recipe streamed past the
    model instead of the file's training samples (:mod:`nopx.training.online`): validation
    and test stay the file's. ``online_buffer`` samples are held to draw batches from,
    ``online_workers`` producer processes refill it (0: made in the training process,
    ``online_per_step`` new samples before every step, exactly reproducible).
    """

    path: str
    generate: str | None = None
    format: Literal["auto", "nopx", "fno-mat", "pdebench", "the-well"] = "auto"
    inputs: tuple[str, ...] = ("a",)
    targets: tuple[str, ...] = ("u",)
    n_train: int = 1000
    n_test: int = 100
    n_val: int | None = None
    normalize: bool = True
    in_memory: Literal["auto", "always", "never"] = "auto"
    memory_limit_gb: float = 4.0
    time: TimeConfig | None = None
    subsample: int = 1
    online: bool = False
    online_buffer: int = 1024
    online_workers: int = 1
    online_per_step: int = 1

    @property
    def validation_size(self) -> int:
        """``n_val``, or 10% of ``n_train`` (at least one sample) when unset."""
        if self.n_val is not None:
            return self.n_val
        return min(max(1, round(0.1 * self.n_train)), self.n_train - 1)

    def __post_init__(self) -> None:
        _require(self.n_train > 0, "n_train", f"must be positive, got {self.n_train}")
        _require(self.n_test > 0, "n_test", f"must be positive, got {self.n_test}")
        _require(self.n_val is None or 0 <= self.n_val < self.n_train, "n_val",
                 f"must be in [0, n_train) = [0, {self.n_train}), got {self.n_val}: the "
                 "validation samples are taken out of the n_train training samples")
        _require(len(self.inputs) > 0, "inputs", "name at least one input field")
        _require(len(self.targets) > 0, "targets", "name at least one target field")
        _require(self.memory_limit_gb > 0, "memory_limit_gb", "must be positive")
        _require(self.subsample > 0, "subsample", f"must be positive, got {self.subsample}")
        _require(not self.online or self.generate is not None, "online", "streams samples of "
                 "the recipe named by data.generate: set data.generate (the recipe that made "
                 "data.path), or remove data.online")
        _require(self.online_buffer > 0, "online_buffer", f"must be positive, got {self.online_buffer}")
        _require(self.online_workers >= 0, "online_workers", "must be >= 0 (0: make the samples "
                 f"in the training process), got {self.online_workers}")
        _require(self.online_per_step >= 0, "online_per_step", f"must be >= 0, got {self.online_per_step}")
        all2all = self.time is not None and self.time.mode == "all2all"
        _require(self.time is None or (self.inputs == self.targets
                                       and (all2all or len(self.inputs) == 1)), "time",
                 "a trajectory task maps a field to its own later values: set inputs and "
                 "targets to the same single field (or the same fields in mode: all2all), "
                 "e.g. inputs: [w], targets: [w]")
        _require(not (all2all and self.online), "online", "streamed samples are not paired in "
                 "time: remove data.online for data.time.mode: all2all")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A registered model (``name``) and its constructor arguments (``kwargs``).

    In YAML the arguments sit beside ``name``: ``model: {name: fno, n_modes: [12, 12]}``.
    ``in_channels``/``out_channels`` default to the number of input/target fields.
    """

    name: str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """A registered training loss (``name``) and its arguments (``kwargs``).

    Built in: ``relative_l2`` (``p``), ``h1`` (finite differences), ``sobolev`` (order ``s``,
    any real, negative included; ``domain``); user code adds more with
    :func:`nopx.losses.register_loss`. In YAML the arguments sit beside the name:
    ``loss: {name: sobolev, s: -1}``.
    """

    name: str = "relative_l2"
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW and its learning-rate schedule (``step_size`` is in epochs).

    ``group_lr`` maps regular expressions on parameter paths (``lifting.layers.0.kernel``)
    to learning-rate factors: the first match wins, unmatched parameters use ``lr``.
    """

    optimizer: Literal["adamw", "adam"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: Literal["constant", "cosine", "step", "onecycle"] = "cosine"
    warmup_steps: int = 0
    step_size: int = 100
    gamma: float = 0.5
    final_lr_ratio: float = 0.0
    grad_clip: float | None = None
    group_lr: dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        _require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        _require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        _require(self.step_size > 0, "step_size", "must be a positive number of epochs")
        _require(0 < self.gamma <= 1, "gamma", f"must be in (0, 1], got {self.gamma}")
        _require(0 <= self.final_lr_ratio <= 1, "final_lr_ratio", "must be in [0, 1]")
        _require(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "must be positive")
        for pattern, factor in self.group_lr.items():
            _require(_is_regex(pattern), "group_lr", f"{pattern!r} is not a regular expression")
            _require(isinstance(factor, (int, float)) and not isinstance(factor, bool)
                     and factor > 0, "group_lr", f"the factor of {pattern!r} must be a positive "
                     f"number, got {factor!r}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Loop sizes and bookkeeping. ``run_dir`` defaults to ``runs/<name>``.

    A non-finite loss or gradient stops the run with a diagnosis (``on_nonfinite: stop``),
    or (``rollback``) restores the last good checkpoint and continues with the learning
    rate multiplied by ``rollback_lr_factor``, at most ``max_rollbacks`` times.

    ``time_limit`` is a wall-clock budget for training in **minutes** (a float; ``null``:
    none), for comparing models at the same budget: training stops at the end of the first
    epoch that ends past it (that epoch is validated and checkpointed as usual), then the
    test split is evaluated on the validation-selected checkpoint and ``summary.json``
    records ``time_limit.stopped``. The clock counts the epochs (compilation, steps,
    validation, checkpoints), not the setup before them (data generation and loading). A
    resumed run continues the clock of the checkpoint it resumes from (time lost to a kill
    after that checkpoint is not counted), so the budget is for the whole run; resuming
    with a larger ``time_limit`` continues a run that stopped on its limit. The schedule
    is still planned over ``epochs``.
    """

    epochs: int = 10
    batch_size: int = 16
    eval_every: int = 1
    log_every: int = 50
    run_dir: str | None = None
    on_nonfinite: Literal["stop", "rollback"] = "stop"
    rollback_lr_factor: float = 0.5
    max_rollbacks: int = 3
    time_limit: float | None = None

    def __post_init__(self) -> None:
        _require(self.epochs > 0, "epochs", f"must be positive, got {self.epochs}")
        _require(self.time_limit is None or self.time_limit > 0, "time_limit",
                 f"must be a positive number of minutes (or null for none), got {self.time_limit}")
        _require(self.batch_size > 0, "batch_size", f"must be positive, got {self.batch_size}")
        _require(self.eval_every > 0, "eval_every", "must be a positive number of epochs")
        _require(self.log_every > 0, "log_every", "must be a positive number of steps")
        _require(0 < self.rollback_lr_factor < 1, "rollback_lr_factor",
                 f"must be in (0, 1), got {self.rollback_lr_factor}")
        _require(self.max_rollbacks >= 0, "max_rollbacks", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Orbax checkpointing: every ``every`` epochs and every ``every_steps`` steps (a kill
    loses at most that many steps), keep ``max_to_keep``, track the best on validation.

    ``best_metric`` is a ``val/`` metric (or ``train/loss``, or null for none): choosing a
    checkpoint by a ``test/`` metric would make the reported test error optimistic.
    """

    every: int = 1
    every_steps: int | None = None
    max_to_keep: int = 2
    best_metric: str | None = "val/rel_l2"
    best_mode: Literal["min", "max"] = "min"

    def __post_init__(self) -> None:
        _require(self.every > 0, "every", "must be a positive number of epochs")
        _require(self.every_steps is None or self.every_steps > 0, "every_steps",
                 "must be a positive number of steps")
        _require(self.max_to_keep > 0, "max_to_keep", "must be positive")
        metric = self.best_metric
        _require(metric is None or not metric.startswith("test/"), "best_metric",
                 f"{metric!r} would choose the checkpoint on the test set, so the test error "
                 "reported for it would be biased; select on the validation split instead "
                 f"(val/{metric.partition('/')[2] if metric else 'rel_l2'}); the test split is "
                 "evaluated once, at the end")
        _require(metric is None or metric.startswith(("val/", "train/")), "best_metric",
                 f"{metric!r} is not a metric the run logs; use val/rel_l2, val/h1 or train/loss")


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """A stage after supervised training (which is always the first, "pretrain", stage).

    ``spectral_refine`` (Spectral-Refiner, for an ``sfno`` on a Navier–Stokes trajectory
    task): per test trajectory, enlarge the last spectral layer to ``modes`` (per-sign
    ``(m_x, m_y, m_t)``; default: the whole grid and one more time mode than trained),
    freeze the rest, and fit it for ``iterations`` Adam steps (``lr_weight`` on weights,
    ``lr_bias`` on the spectral bias) to the H^-1(``alpha``) norm of the NSE residual of
    the predicted trajectory, in float64. ν, forcing and the slice spacing come from the
    dataset's recipe. ``samples`` test trajectories are refined, ``batch`` at a time.
    ``anchor`` (with ``time_derivative: fd``) measures the residual from the last input
    slice on, so the first predicted slice is tied to the input (:func:`nopx.refine.refine`).
    The residual is that of the physical equation: the run needs ``data.normalize: false``.
    """

    kind: Literal["spectral_refine"]
    name: str = "spectral_refine"
    iterations: int = 50
    modes: tuple[int, ...] | None = None
    lr_weight: float = 1e-4
    lr_bias: float = 0.2
    alpha: float = 10 ** -1.5
    time_derivative: Literal["spectral", "fd"] = "spectral"
    anchor: bool = False
    samples: int = 8
    batch: int = 4

    def __post_init__(self) -> None:
        _require(self.iterations > 0, "iterations", "must be positive")
        _require(self.modes is None or len(self.modes) == 3, "modes", "give (m_x, m_y, m_t)")
        _require(self.lr_weight > 0 and self.lr_bias > 0, "lr_weight", "learning rates must be positive")
        _require(self.alpha > 0, "alpha", "must be positive")
        _require(self.samples > 0 and self.batch > 0, "samples", "samples and batch must be positive")
        _require(not self.anchor or self.time_derivative == "fd", "anchor",
                 "needs time_derivative: fd (finite differences from the last input slice)")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """The device mesh ``data × model`` (:mod:`nopx.parallel`); one size may be -1 (the rest).

    The batch is split over ``data`` (``train.batch_size`` must be a multiple of it); the
    parameters and optimizer state are replicated, or, with ``model`` > 1, split over
    ``model`` by the model's own sharding rule (spectral and channel weights by channel,
    attention by head, TFNO factors by rank). Each size must divide the device count; a
    multi-process run uses every device (``data: -1``).
    """

    data: int = 1
    model: int = 1

    def __post_init__(self) -> None:
        _require(self.data == -1 or self.data > 0, "data", "must be -1 (the rest) or positive")
        _require(self.model == -1 or self.model > 0, "model", "must be -1 (the rest) or positive")
        _require(self.data != -1 or self.model != -1, "data",
                 "mesh.data and mesh.model are both -1; give one of them a size")


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
