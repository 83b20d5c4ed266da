"""Training data: train/validation/test splits of an HDF5 dataset, normalisation, batches.

A split is held in memory when it fits (``data.memory_limit_gb``) and read one sample at
a time otherwise (h5py fancy indexing is ~40x slower than per-sample reads). Fields are
stacked as channels, channels-last: ``x`` is ``(N, *spatial, len(inputs))``.

In a run of several processes (:mod:`nopx.distributed`) each process reads only what it
uses: its rows of each batch, from the file, and its share of the chunks the normalisers
are summed over (:func:`chunk_share`, :func:`gather_chunk_sums`); the all2all pair
splits (:mod:`nopx.training.all2all`) alike, whole trajectories at a time. There
``data.in_memory: auto`` holds nothing: the data order (:mod:`nopx.training.source`, a new
permutation of the whole split each epoch, the same for any number of processes) passes
the training samples through every process's rows as the epochs go by: after ``E``
epochs each of ``P`` processes has used about ``1 - (1 - 1/P)^E`` of them, so a
per-process subset in memory would grow to the whole split. ``data.in_memory: always``
still holds every split whole in every process.

Test hook: with ``NOPX_READ_LOG=DIR`` set, every sample a split reads from the file is
appended (its dataset index, one per line) to ``DIR/reads-<process index>.txt``, so a test
can see what each process read.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from nopx.config import DataConfig, TimeConfig
from nopx.distributed import Process, gather_blocks
from nopx.errors import UserError

#: The normalisers sum over chunks of this many consecutive samples of the training split,
#: each process over its share of the chunks (:func:`chunk_share`), and add the chunk sums
#: in chunk order: the float64 arithmetic, hence the statistics, are the same bit for bit
#: whatever the number of processes.
NORM_CHUNK = 64
READ_LOG = "NOPX_READ_LOG"


def chunk_share(size: int, process: Process) -> range:
    """The normaliser chunks (of :data:`NORM_CHUNK` positions of a ``size``-sample split)
    that ``process`` sums: a contiguous block, the chunks dealt out as evenly as they go.

    >>> [chunk_share(200, Process(i, 3)) for i in range(3)]
    [range(0, 1), range(1, 2), range(2, 4)]
    """
    chunks = -(-size // NORM_CHUNK)
    return range(process.index * chunks // process.count,
                 (process.index + 1) * chunks // process.count)


def gather_chunk_sums(size: int, process: Process,
                      sums: Callable[[range], np.ndarray]) -> np.ndarray:
    """``(chunks, ...)``: the statistics ``sums(chunks)`` of every normaliser chunk of a
    ``size``-sample split, in chunk order, the same array in every process of a run.

    Each process computes only its :func:`chunk_share` and :func:`gather_blocks` hands
    every process all of them, so call it in every process. ``sums`` returns one row per
    chunk in float64; the rows travel bit for bit.
    """
    shares = [chunk_share(size, Process(p, process.count)) for p in range(process.count)]
    return gather_blocks(sums(shares[process.index]), [len(share) for share in shares])


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
    (:func:`nopx.datagen.open_dataset`). ``process`` is the process that reads the split
    (its share of the normaliser sums; default: the only one).
    """

    def __init__(self, path: pathlib.Path, inputs: Sequence[str], targets: Sequence[str],
                 indices: Sequence[int], in_memory: bool, time: TimeConfig | None = None,
                 output_steps: int | None = None, subsample: int = 1, format: str = "auto",
                 process: Process | None = None) -> None:
        self.path = path
        self.format = format
        self.process = Process() if process is None else process
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
            _note_reads(self.process, self.indices)
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
        arrays = checked_fields(self.path, arrays, samples, self.subsample,
                                time_axis=self.time is not None)
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
        with open_reader(self.path, self.format) as reader:
            return self._read_samples(reader, self.indices[positions])

    def _read_samples(self, reader, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of the dataset samples ``samples`` ``(n,)``, one read per sample from
        the open ``reader``."""
        return self._to_xy(read_samples(reader, self.fields, samples, self.process), samples)

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
        with open_reader(self.path, self.format) as reader:
            for start in range(0, stop, batch_size):
                yield self._read_samples(reader, self.indices[order[start:start + batch_size]])

    def fit_normalizers(self) -> tuple[Normalizer, Normalizer]:
        """Mean and std of inputs and targets over this split (float64 sums).

        One pair per field channel; in a trajectory task one scalar pair shared by ``x``
        and ``y`` (they are the same field, and a rollout feeds outputs back as inputs).
        Of several processes each sums its :func:`chunk_share` and all combine the sums
        (so call it in every process): the normalisers of one process, bit for bit.
        """
        if self.process.count == 1:
            return self.normalizers_from(self.normalizer_sums())
        return self.normalizers_from(gather_chunk_sums(len(self), self.process,
                                                       self.normalizer_sums))

    @property
    def _sum_names(self) -> tuple[str, ...]:
        """The statistic each channel's sums add to: ``x``'s channels, then ``y``'s (all the
        slices of a trajectory add to one, ``"traj"``)."""
        if self.time is None:
            return self.inputs + self.targets
        return ("traj",) * (self.time.input + self.output_steps)

    def normalizer_sums(self, chunks: range | None = None) -> np.ndarray:
        """``(len(chunks), C_in + C_out, 3)`` float64: per chunk of :data:`NORM_CHUNK`
        positions and per channel of ``x`` then ``y``, its (count, sum, sum of squares).

        ``chunks``: consecutive chunk numbers; ``None``: every chunk :meth:`batches` yields
        in turn (an online split's: its buffer's).
        """
        order = None if chunks is None else np.arange(
            chunks.start * NORM_CHUNK, min(chunks.stop * NORM_CHUNK, len(self)))
        rows = []
        for x, y in self.batches(NORM_CHUNK, order):
            channels = [arrays[..., c].astype(np.float64)
                        for arrays in (x, y) for c in range(arrays.shape[-1])]
            rows.append([(values.size, values.sum(), np.square(values).sum())
                         for values in channels])
        return np.array(rows, np.float64).reshape(-1, len(self._sum_names), 3)

    def normalizers_from(self, sums: np.ndarray) -> tuple[Normalizer, Normalizer]:
        """The normalisers from the :meth:`normalizer_sums` of every chunk ``(chunks, C_in +
        C_out, 3)``, added one channel at a time in chunk order (the order fixes the float64
        rounding)."""
        totals = {name: np.zeros(3) for name in self._sum_names}
        for chunk in sums:
            for name, channel in zip(self._sum_names, chunk, strict=True):
                totals[name] += channel
        shared = self.time is not None
        names_x = ("traj",) if shared else self.inputs
        names_y = ("traj",) if shared else self.targets

        def fit(names: tuple[str, ...]) -> Normalizer:
            count, total, squares = np.array([totals[n] for n in names]).T
            mean = total / count
            std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
            return Normalizer(mean.astype(np.float32), np.maximum(std, 1e-8).astype(np.float32))

        return fit(names_x), fit(names_y)


def _read_range(path: pathlib.Path, format: str, fields: Sequence[str],
                indices: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
    """``{field: (n, ...)}`` of samples ``indices`` (one contiguous read, then those
    samples), and the file's root attributes."""
    first, stop = int(indices.min()), int(indices.max()) + 1
    with open_reader(path, format) as reader:
        arrays = {f: reader.read_range(f, first, stop)[indices - first] for f in fields}
        return arrays, dict(reader.attrs)


def read_fields(path: pathlib.Path, format: str, fields: Sequence[str], indices: np.ndarray,
                subsample: int = 1, *, time_axis: bool = False,
                process: Process | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """``({field: (n, ...)}, root attributes)``: samples ``indices`` ``(n,)`` in memory (read
    by ``process``, default: the only one), as :func:`checked_fields` leaves them."""
    indices = np.asarray(indices, np.int64)
    arrays, attrs = _read_range(path, format, fields, indices)
    _note_reads(Process() if process is None else process, indices)
    return checked_fields(path, arrays, indices, subsample, time_axis=time_axis), attrs


def read_samples(reader, fields: Sequence[str], samples: np.ndarray,
                 process: Process) -> dict[str, np.ndarray]:
    """``{field: (n, ...)}``: the dataset samples ``samples`` ``(n,)``, one read per sample
    from the open ``reader`` (h5py fancy indexing is ~40x slower), read by ``process``."""
    _note_reads(process, samples)
    return {f: np.stack([reader.read(f, int(i)) for i in samples]) for f in fields}


def checked_fields(path: pathlib.Path, arrays: dict[str, np.ndarray], samples: np.ndarray,
                   subsample: int = 1, *, time_axis: bool = False) -> dict[str, np.ndarray]:
    """``arrays`` ``{field: (n, ...)}`` of the dataset samples ``samples`` ``(n,)``, refused
    if not finite, then every ``subsample``-th grid point per spatial axis (``time_axis``:
    each sample is ``(T, *spatial)``)."""
    _check_finite(path, arrays, samples)
    if subsample == 1:
        return arrays
    return {name: _stride(field, subsample, 2 if time_axis else 1)
            for name, field in arrays.items()}


def _note_reads(process: Process, samples: np.ndarray) -> None:
    """The ``NOPX_READ_LOG`` test hook (see the module doc): log ``samples`` ``(n,)``, the
    dataset indices ``process`` read from the file."""
    folder = os.environ.get(READ_LOG)
    if folder:
        with (pathlib.Path(folder) / f"reads-{process.index}.txt").open("a") as log:
            log.write("".join(f"{int(i)}\n" for i in samples))


def open_reader(path: pathlib.Path, format: str):
    """The dataset reader of ``path`` (:func:`nopx.datagen.open_dataset`, imported only here)."""
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


def load_splits(cfg: DataConfig, path: pathlib.Path | None = None, *, seed: int = 0,
                process: Process | None = None) -> Splits:
    """Open ``cfg.path`` (or ``path``), check fields and sizes, return the three splits.

    See :func:`split_indices`: the training pool and the test samples must not overlap.
    ``process``: the process that reads them (default: this one in JAX's runtime); one of
    several holds a split in memory only with ``data.in_memory: always``.
    """
    path = pathlib.Path(path or cfg.path)
    with open_reader(path, cfg.format) as reader:
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
    sample_bytes = 4 * sum(int(np.prod(shape)) for shape in shapes.values())
    fits = (cfg.n_train + cfg.n_test) * sample_bytes <= cfg.memory_limit_gb * 2**30
    # One of several processes reads only its rows of each batch (see the module doc).
    process = Process.current() if process is None else process
    in_memory = cfg.in_memory == "always" or (cfg.in_memory == "auto" and fits
                                              and process.count == 1)
    if cfg.time is not None and cfg.time.mode == "all2all":
        # Imported here: nopx.training.all2all builds on this module.
        from nopx.training.all2all import PairSplit

        return Splits(*(PairSplit(path, cfg.inputs, indices, cfg.time, subsample=cfg.subsample,
                                  format=cfg.format, in_memory=in_memory, process=process)
                        for indices in split_indices(cfg, total, seed)))
    output_steps = None if cfg.time is None else _output_steps(cfg, shapes[cfg.inputs[0]], path)
    return Splits(*(Split(path, cfg.inputs, cfg.targets, indices, in_memory, cfg.time,
                          output_steps, cfg.subsample, cfg.format, process)
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
