"""Training data: train/test splits of an HDF5 dataset, per-field normalisation, batches.

A split is held in memory when it fits (``data.memory_limit_gb``) and read one sample at
a time otherwise (h5py fancy indexing is ~40x slower than per-sample reads). Fields are
stacked as channels, channels-last: ``x`` is ``(N, *spatial, len(inputs))``.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator, Sequence

import numpy as np

from nopx.config import DataConfig
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
    """Samples ``indices`` of a dataset, fields stacked as channels.

    Either holds ``x``/``y`` arrays in memory or reads each sample from ``path`` on demand.
    """

    def __init__(self, path: pathlib.Path, inputs: Sequence[str], targets: Sequence[str],
                 indices: range, in_memory: bool) -> None:
        self.path = path
        self.inputs = tuple(inputs)
        self.targets = tuple(targets)
        self.indices = indices
        self.x: np.ndarray | None = None
        self.y: np.ndarray | None = None
        if in_memory:
            with _open(path) as reader:
                self.x = _stack([reader.read_range(f, indices.start, indices.stop) for f in inputs])
                self.y = _stack([reader.read_range(f, indices.start, indices.stop) for f in targets])

    def __len__(self) -> int:
        return len(self.indices)

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
        with _open(self.path) as reader:
            for start in range(0, stop, batch_size):
                samples = [self.indices[int(i)] for i in order[start:start + batch_size]]
                yield (_read_samples(reader, self.inputs, samples),
                       _read_samples(reader, self.targets, samples))

    def fit_normalizers(self) -> tuple[Normalizer, Normalizer]:
        """Per-channel mean and std of inputs and targets over this split (float64 sums)."""
        sums = {name: np.zeros(3) for name in self.inputs + self.targets}
        for x, y in self.batches(64):
            for arrays, names in ((x, self.inputs), (y, self.targets)):
                for c, name in enumerate(names):
                    values = arrays[..., c].astype(np.float64)
                    sums[name] += (values.size, values.sum(), np.square(values).sum())

        def fit(names: tuple[str, ...]) -> Normalizer:
            count, total, squares = np.array([sums[n] for n in names]).T
            mean = total / count
            std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
            return Normalizer(mean.astype(np.float32), np.maximum(std, 1e-8).astype(np.float32))

        return fit(self.inputs), fit(self.targets)


def _open(path: pathlib.Path):
    from nopx.datagen import open_dataset

    return open_dataset(path)


def _stack(fields: list[np.ndarray]) -> np.ndarray:
    return np.stack(fields, axis=-1).astype(np.float32, copy=False)


def _read_samples(reader, fields: Sequence[str], samples: list[int]) -> np.ndarray:
    return np.stack([_stack([reader.read(f, i) for f in fields]) for i in samples])


def load_splits(cfg: DataConfig, path: pathlib.Path | None = None) -> tuple[Split, Split]:
    """Open ``cfg.path`` (or ``path``), check fields and sizes, return (train, test) splits.

    Train is the first ``n_train`` samples and test the last ``n_test``; they must not overlap.
    """
    path = pathlib.Path(path or cfg.path)
    with _open(path) as reader:
        missing = [f for f in cfg.inputs + cfg.targets if f not in reader.fields]
        if missing:
            raise UserError(f"{path}: no field {missing[0]!r} (fields: {', '.join(reader.fields)}); "
                            f"fix data.inputs / data.targets in the config")
        total = reader.n_samples
        sample_bytes = 4 * int(np.prod(reader.spatial_shape)) * len(cfg.inputs + cfg.targets)
    if cfg.n_train + cfg.n_test > total:
        raise UserError(f"{path}: holds {total} samples but data.n_train + data.n_test = "
                        f"{cfg.n_train + cfg.n_test}; lower them or generate more samples")
    fits = (cfg.n_train + cfg.n_test) * sample_bytes <= cfg.memory_limit_gb * 2**30
    in_memory = cfg.in_memory == "always" or (cfg.in_memory == "auto" and fits)
    train = Split(path, cfg.inputs, cfg.targets, range(0, cfg.n_train), in_memory)
    test = Split(path, cfg.inputs, cfg.targets, range(total - cfg.n_test, total), in_memory)
    return train, test
