"""The ``data`` section: the dataset, its splits and fields (:class:`DataConfig`), and the
trajectory window learned from it (:class:`TimeConfig`)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from nopx.config.parsing import _require


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
