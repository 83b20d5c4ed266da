"""Training data: train/validation/test splits of an HDF5 dataset, normalisation, batches.

A split is held in memory when it fits (``data.memory_limit_gb``) and read one sample at
a time otherwise (h5py fancy indexing is ~40x slower than per-sample reads). Fields are
stacked as channels, channels-last: ``x`` is ``(N, *spatial, len(inputs))``.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from nopx.config import DataConfig, TimeConfig
from nopx.errors import UserError


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """Scalar mean/std per channel, fitted on the training split only.

    Scalars (not per-grid-point statistics) keep the model resolution-independent.

    >>> norm = Normalizer(mean=np.array([1.0]), std=np.array([2.0]))
    >>> norm.encode(np.array([[3.0]]))
    array([[1.]])
    >>> norm.decode(np.array([[1.0]]))
    array([[3.]])
    """

    mean: np.ndarray
    std: np.ndarray

    def encode(self, x):
        return (x - self.mean) / self.std

    def decode(self, x):
        return x * self.std + self.mean

    def to_json(self) -> dict[str, list[float]]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_json(cls, data: dict[str, list[float]]) -> "Normalizer":
        return cls(np.asarray(data["mean"], np.float32), np.asarray(data["std"], np.float32))

    @classmethod
    def identity(cls, channels: int) -> "Normalizer":
        return cls(np.zeros(channels, np.float32), np.ones(channels, np.float32))


class Split:
    """Samples ``indices`` of a dataset as ``(x, y)`` pairs, channels-last.

    Fields are stacked as channels; with a :class:`~nopx.config.TimeConfig` the slices of
    one trajectory field ``(T, *spatial)`` become the channels instead: ``x`` holds
    ``time.input`` slices, ``y`` the ``output`` slices after them. Either holds ``x``/``y``
    in memory or reads each sample from ``path`` on demand. A sample holding NaN or Inf
    is refused with its index when it is read. ``format`` is the file's layout
    (:func:`nopx.datagen.open_dataset`).
    """

    def __init__(self, path: pathlib.Path, inputs: Sequence[str], targets: Sequence[str],
                 indices: Sequence[int], in_memory: bool, time: TimeConfig | None = None,
                 output_steps: int | None = None, subsample: int = 1, format: str = "auto") -> None:
        self.path = path
        self.format = format
        self.inputs = tuple(inputs)
        self.targets = tuple(targets)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.time = time
        self.output_steps = output_steps
        self.subsample = subsample
        self.x: np.ndarray | None = None
        self.y: np.ndarray | None = None
        self.time_scale: float | None = None   # lead-time unit: all2all splits only
        if in_memory and len(self.indices):
            arrays, _ = _read_range(path, format, self.fields, self.indices)
            self.x, self.y = self._to_xy(arrays, self.indices)

    @property
    def fields(self) -> tuple[str, ...]:
        """The dataset fields this split reads, each once."""
        return tuple(dict.fromkeys(self.inputs + self.targets))

    def _to_xy(self, arrays: dict[str, np.ndarray],
               samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``{field: (n, ...)}`` → ``x (n, *spatial, C_in)``, ``y (n, *spatial, C_out)``.

        ``samples`` are the dataset indices of the ``n`` rows, named if one is not finite.
        """
        _check_finite(self.path, arrays, samples)
        if self.subsample > 1:
            arrays = {name: _stride(field, self.subsample, 1 if self.time is None else 2)
                      for name, field in arrays.items()}
        if self.time is None:
            return (_stack([arrays[f] for f in self.inputs]),
                    _stack([arrays[f] for f in self.targets]))
        field = arrays[self.inputs[0]]
        first, middle = self.time.start, self.time.start + self.time.input
        x = np.moveaxis(field[:, first:middle], 1, -1)
        y = np.moveaxis(field[:, middle:middle + self.output_steps], 1, -1)
        return x.astype(np.float32, copy=False), y.astype(np.float32, copy=False)

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of the samples at ``positions`` within the split (random access, a
        :class:`~nopx.training.source.Source`): from memory, or only those samples from
        the file."""
        if self.x is not None:
            return self.x[positions], self.y[positions]
        samples = self.indices[positions]
        with _open(self.path, self.format) as reader:
            return self._to_xy({f: np.stack([reader.read(f, int(i)) for i in samples])
                                for f in self.fields}, samples)

    def batches(self, batch_size: int, order: np.ndarray | None = None,
                drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(x, y)`` batches in ``order`` (positions within the split; default: in turn)."""
        order = np.arange(len(self)) if order is None else order
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        if self.x is not None:
            for start in range(0, stop, batch_size):
                take = order[start:start + batch_size]
                yield self.x[take], self.y[take]
            return
        with _open(self.path, self.format) as reader:
            for start in range(0, stop, batch_size):
                samples = self.indices[order[start:start + batch_size]]
                yield self._to_xy({f: np.stack([reader.read(f, int(i)) for i in samples])
                                   for f in self.fields}, samples)

    def fit_normalizers(self) -> tuple[Normalizer, Normalizer]:
        """Mean and std of inputs and targets over this split (float64 sums).

        One pair per field channel; in a trajectory task one scalar pair shared by ``x``
        and ``y`` (they are the same field, and a rollout feeds outputs back as inputs).
        """
        shared = self.time is not None
        names_x = ("traj",) if shared else self.inputs
        names_y = ("traj",) if shared else self.targets
        sums = {name: np.zeros(3) for name in names_x + names_y}
        for x, y in self.batches(64):
            for arrays, names in ((x, names_x), (y, names_y)):
                for c in range(arrays.shape[-1]):
                    values = arrays[..., c].astype(np.float64)
                    sums[names[0] if shared else names[c]] += (
                        values.size, values.sum(), np.square(values).sum())

        def fit(names: tuple[str, ...]) -> Normalizer:
            count, total, squares = np.array([sums[n] for n in names]).T
            mean = total / count
            std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
            return Normalizer(mean.astype(np.float32), np.maximum(std, 1e-8).astype(np.float32))

        return fit(names_x), fit(names_y)


def _read_range(path: pathlib.Path, format: str, fields: Sequence[str],
                indices: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
    """``{field: (n, ...)}`` of samples ``indices`` (one contiguous read, then those
    samples), and the file's root attributes."""
    first, stop = int(indices.min()), int(indices.max()) + 1
    with _open(path, format) as reader:
        arrays = {f: reader.read_range(f, first, stop)[indices - first] for f in fields}
        return arrays, dict(reader.attrs)


def read_fields(path: pathlib.Path, format: str, fields: Sequence[str], indices: np.ndarray,
                subsample: int = 1, *, time_axis: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """``({field: (n, ...)}, root attributes)``: samples ``indices`` in memory, checked
    finite, every ``subsample``-th grid point per spatial axis (``time_axis``: each sample
    is ``(T, *spatial)``)."""
    arrays, attrs = _read_range(path, format, fields, np.asarray(indices, np.int64))
    _check_finite(path, arrays, np.asarray(indices))
    if subsample > 1:
        arrays = {name: _stride(field, subsample, 2 if time_axis else 1)
                  for name, field in arrays.items()}
    return arrays, attrs


def _open(path: pathlib.Path, format: str):
    from nopx.datagen import open_dataset

    return open_dataset(path, format=format)


def _check_finite(path: pathlib.Path, arrays: dict[str, np.ndarray], samples: np.ndarray) -> None:
    """Refuse NaN/Inf data, naming the first offending sample: it would poison training."""
    for name, field in arrays.items():
        finite = np.isfinite(field.reshape(len(field), -1)).all(axis=1)
        if not finite.all():
            bad = int(samples[np.argmin(finite)])
            raise UserError(f"{path}: sample {bad} of field {name!r} holds NaN or Inf values; "
                            "regenerate the dataset (nopx datagen) or keep that sample out of "
                            "data.n_train / data.n_test")


def _stride(field: np.ndarray, step: int, first_spatial: int) -> np.ndarray:
    """Every ``step``-th point along the spatial axes (from axis ``first_spatial`` on)."""
    index = (slice(None),) * first_spatial + (slice(None, None, step),) * (field.ndim - first_spatial)
    return field[index]


def _stack(fields: list[np.ndarray]) -> np.ndarray:
    return np.stack(fields, axis=-1).astype(np.float32, copy=False)


class Splits(NamedTuple):
    """The three disjoint splits of a run."""

    train: Split
    val: Split
    test: Split


def split_indices(cfg: DataConfig, total: int, seed: int) -> tuple[np.ndarray, ...]:
    """``(train, val, test)`` dataset indices.

    The training pool is the first ``n_train`` samples; ``n_val`` of them, drawn by
    ``seed``, validate. Test is the last ``n_test`` samples, never drawn from.

    >>> from nopx.config import DataConfig
    >>> train, val, test = split_indices(DataConfig(path="d.h5", n_train=10, n_test=2), 20, 0)
    >>> len(train), len(val), test.tolist()
    (9, 1, [18, 19])
    """
    pool = np.arange(cfg.n_train)
    val = np.sort(np.random.default_rng([seed, 0x5EED]).choice(
        pool, cfg.validation_size, replace=False))
    return np.setdiff1d(pool, val), val, np.arange(total - cfg.n_test, total)


def load_splits(cfg: DataConfig, path: pathlib.Path | None = None, *, seed: int = 0) -> Splits:
    """Open ``cfg.path`` (or ``path``), check fields and sizes, return the three splits.

    See :func:`split_indices`: the training pool and the test samples must not overlap.
    """
    path = pathlib.Path(path or cfg.path)
    with _open(path, cfg.format) as reader:
        missing = [f for f in cfg.inputs + cfg.targets if f not in reader.fields]
        if missing:
            raise UserError(f"{path}: no field {missing[0]!r} (fields: {', '.join(reader.fields)}); "
                            f"fix data.inputs / data.targets in the config")
        total = reader.n_samples
        shapes = {f: reader.field_shape(f) for f in set(cfg.inputs + cfg.targets)}
        grid = reader.attrs.get("grid_shape")
    grid = None if grid is None else tuple(int(n) for n in grid)
    for field in cfg.inputs if cfg.time is not None else ():
        _check_trajectory(field, shapes[field], grid, path)
    if len({shapes[f][0] for f in cfg.inputs}) > 1 and cfg.time is not None:
        raise UserError(f"{path}: fields {', '.join(cfg.inputs)} have different numbers of time "
                        f"slices ({', '.join(str(shapes[f][0]) for f in cfg.inputs)}); learn "
                        "fields of one trajectory together")
    if cfg.n_train + cfg.n_test > total:
        raise UserError(f"{path}: holds {total} samples but data.n_train + data.n_test = "
                        f"{cfg.n_train + cfg.n_test}; lower them or generate more samples")
    if cfg.time is not None and cfg.time.mode == "all2all":
        # Imported here: nopx.training.all2all builds on this module.
        from nopx.training.all2all import PairSplit

        return Splits(*(PairSplit(path, cfg.inputs, indices, cfg.time, subsample=cfg.subsample,
                                  format=cfg.format)
                        for indices in split_indices(cfg, total, seed)))
    output_steps = None if cfg.time is None else _output_steps(cfg, shapes[cfg.inputs[0]], path)
    sample_bytes = 4 * sum(int(np.prod(shape)) for shape in shapes.values())
    fits = (cfg.n_train + cfg.n_test) * sample_bytes <= cfg.memory_limit_gb * 2**30
    in_memory = cfg.in_memory == "always" or (cfg.in_memory == "auto" and fits)
    return Splits(*(Split(path, cfg.inputs, cfg.targets, indices, in_memory, cfg.time,
                          output_steps, cfg.subsample, cfg.format)
                    for indices in split_indices(cfg, total, seed)))


def _check_trajectory(field: str, shape: tuple[int, ...], grid: tuple[int, ...] | None,
                      path: pathlib.Path) -> None:
    """Refuse a field that is not a trajectory ``(T, *spatial)`` (``grid``: the dataset's
    spatial grid, when it records one)."""
    if len(shape) < 2 or shape == grid:
        raise UserError(f"{path}: field {field!r} has shape {shape} per sample, not a trajectory "
                        "(T, *spatial); remove data.time or name a trajectory field")


def _output_steps(cfg: DataConfig, shape: tuple[int, ...], path: pathlib.Path) -> int:
    """The number of target slices of a trajectory window, checked against the field."""
    time = cfg.time
    field = cfg.inputs[0]
    available = shape[0] - time.start - time.input
    output = available if time.output is None else time.output
    if available < 1 or output > available:
        raise UserError(f"{path}: field {field!r} has {shape[0]} time slices, too few for "
                        f"data.time start {time.start} + input {time.input} + output {output}; "
                        "shorten the window")
    return output
