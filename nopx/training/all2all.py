"""All2all samples of trajectories: every ordered pair of snapshots, with its lead time.

Poseidon's training (Herde et al. 2024, MODELS.md §5.3): a solution operator has the
semigroup property ``S(t_j − t_i) u(t_i) = u(t_j)``, so each pair ``(i, j)``, ``j ≥ i``, of
the ``K + 1`` snapshots of a trajectory is a sample ``u(t_i) → u(t_j)`` with the lead time
``t_j − t_i``: ``(K + 1)(K + 2) / 2`` samples per trajectory instead of ``K``. The snapshots,
the pairs kept and the lead-time unit are set by :class:`nopx.config.TimeConfig`.

Samples: ``x (B, *spatial, C + 1)`` holds the ``C`` fields at ``t_i`` and the lead time as a
last, constant channel; ``y (B, *spatial, C)`` the fields at ``t_j``. The task
(:func:`nopx.training.tasks.all2all`) splits the lead time off for a model that takes it
(``model(x, t)``, e.g. scOT) and leaves it as an input channel for one that does not
(FNO, as Poseidon's FNO/CNO baselines do). Training steps see ``(x, y)`` like any task.

Lead time: ``(t_j − t_i) / time_scale`` with the times of the dataset's ``times``
attribute (datagen writes it for time-dependent PDEs), else the slice index times the
recipe's ``record_every``, else the slice index. ``time_scale`` defaults to the time the
snapshots span, so training lead times lie in ``[0, 1]`` (Poseidon's t/T); the run stores
it, so evaluation and :mod:`nopx.training.time_eval` convert physical times alike.
The normalisers leave the lead-time channel alone (mean 0, std 1): it is already
scaled, and a shift would make t = 0 (the identity map) something else.

Of several processes (:mod:`nopx.distributed`) each reads only the trajectories of the
pairs in its rows of each batch, and of its share of the normaliser chunks, as a plain
split does (:mod:`nopx.training.data`).
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator, Sequence

import numpy as np
import yaml

from nopx.config import TimeConfig
from nopx.distributed import Process
from nopx.errors import UserError
from nopx.training.data import (NORM_CHUNK, Normalizer, checked_fields, gather_chunk_sums,
                                open_reader, read_fields, read_samples)


def snapshot_slices(time: TimeConfig, n_slices: int) -> np.ndarray:
    """The slice indices of the snapshots: ``start, start + stride, ...`` (``output + 1``
    of them, default all that fit in ``n_slices``).

    >>> snapshot_slices(TimeConfig(mode="all2all", stride=2, output=3), 10).tolist()
    [0, 2, 4, 6]
    """
    fit = (n_slices - 1 - time.start) // time.stride
    steps = fit if time.output is None else time.output
    if fit < 1 or steps > fit:
        raise ValueError(f"{n_slices} time slices hold {max(fit, 0)} steps of stride "
                         f"{time.stride} after slice {time.start}, data.time.output asks for "
                         f"{steps}; lower data.time.output, stride or start")
    return time.start + time.stride * np.arange(steps + 1)


def pair_table(n_snapshots: int, time: TimeConfig, trajectories: Sequence[int]) -> np.ndarray:
    """``(P, 3)`` rows ``(row, i, j)``: snapshot ``i`` to ``j`` of the ``row``-th trajectory.

    ``trajectories`` are the dataset indices of the rows; the ``pairs`` subset of each is
    drawn from ``(pair_seed, dataset index)``, so a trajectory keeps its pairs whatever
    split it is in.

    >>> pair_table(3, TimeConfig(mode="all2all"), [7]).tolist()
    [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 1], [0, 1, 2], [0, 2, 2]]
    >>> strict = TimeConfig(mode="all2all", include_zero=False, max_lead=1)
    >>> pair_table(3, strict, [7])[:, 1:].tolist()
    [[0, 1], [1, 2]]
    """
    first, last = np.triu_indices(n_snapshots, k=0 if time.include_zero else 1)
    if time.max_lead is not None:
        keep = last - first <= time.max_lead
        first, last = first[keep], last[keep]
    rows = []
    for row, index in enumerate(trajectories):
        take = np.arange(len(first))
        if time.pairs is not None and time.pairs < len(take):
            rng = np.random.default_rng([time.pair_seed, int(index)])
            take = np.sort(rng.choice(take, time.pairs, replace=False))
        rows.append(np.stack([np.full(len(take), row), first[take], last[take]], axis=1))
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 3), np.int64)


def dataset_times(attrs: dict, n_slices: int) -> np.ndarray:
    """``(n_slices,)`` physical times of a trajectory's slices (see the module docstring)."""
    times = attrs.get("times")
    if times is not None and len(times) == n_slices:
        return np.asarray(times, np.float64)
    recipe = yaml.safe_load(attrs["recipe"]) if isinstance(attrs.get("recipe"), str) else None
    section = recipe.get(recipe.get("pde"), {}) if isinstance(recipe, dict) else {}
    every = section.get("record_every") if isinstance(section, dict) else None
    return np.arange(n_slices) * float(every or 1.0)


class PairSplit:
    """The all2all samples of the trajectories ``indices``.

    Args:
      path, format: the dataset (:func:`nopx.datagen.open_dataset`).
      fields: trajectory fields ``(T, *spatial)``, stacked as channels.
      indices: dataset indices of the trajectories.
      time: the all2all settings.
      subsample: keep every k-th grid point per spatial axis.
      time_scale: the lead-time unit; ``None``: ``time.time_scale``, else the span of the
        snapshots.
      in_memory: hold the snapshots (``snapshots``); else read the trajectories a batch
        needs from the file, each once per batch.
      process: the process that reads the split (its share of the normaliser sums;
        default: the only one).
    """

    output_steps = 1   # one state out: what a trajectory task's run metadata records

    def __init__(self, path: pathlib.Path, fields: Sequence[str], indices: Sequence[int],
                 time: TimeConfig, *, subsample: int = 1, format: str = "auto",
                 time_scale: float | None = None, in_memory: bool = True,
                 process: Process | None = None) -> None:
        self.path, self.fields, self.time = pathlib.Path(path), tuple(fields), time
        self.format, self.subsample = format, subsample
        self.process = Process() if process is None else process
        self.indices = np.asarray(indices, dtype=np.int64)
        with open_reader(self.path, format) as reader:
            n_slices = reader.field_shape(self.fields[0])[0]
            attrs = dict(reader.attrs)
        try:
            self.slices = snapshot_slices(time, n_slices)
        except ValueError as err:
            raise UserError(f"{self.path}: {err}") from None
        self.times = dataset_times(attrs, n_slices)[self.slices]
        span = float(self.times[-1] - self.times[0])
        self.time_scale = float(time_scale or time.time_scale or span)
        self.pairs = pair_table(len(self.slices), time, self.indices)
        # (n, K + 1, *spatial, C): the snapshots of every trajectory, fields as channels
        self.snapshots: np.ndarray | None = None
        if in_memory and len(self.indices):
            arrays, _ = read_fields(self.path, format, self.fields, self.indices, subsample,
                                    time_axis=True, process=self.process)
            self.snapshots = self._snapshots(arrays)

    def _snapshots(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """``{field: (n, T, *spatial)}`` → their snapshots ``(n, K + 1, *spatial, C)``."""
        return np.stack([arrays[f][:, self.slices] for f in self.fields], axis=-1)

    def trajectories(self, rows: np.ndarray) -> np.ndarray:
        """``(len(rows), K + 1, *spatial, C)``: the snapshots of the trajectories at ``rows``
        (positions in ``indices``), held or read from the file."""
        if self.snapshots is not None:
            return self.snapshots[rows]
        samples = self.indices[rows]
        with open_reader(self.path, self.format) as reader:
            arrays = read_samples(reader, self.fields, samples, self.process)
        return self._snapshots(checked_fields(self.path, arrays, samples, self.subsample,
                                              time_axis=True))

    def __len__(self) -> int:
        return len(self.pairs)

    def lead_time(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Scaled lead times of snapshot pairs ``(first, last)``."""
        return ((self.times[last] - self.times[first]) / self.time_scale).astype(np.float32)

    def read(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``x (n, *spatial, C + 1)`` (fields, lead time), ``y (n, *spatial, C)``."""
        row, first, last = self.pairs[np.asarray(positions)].T
        held = self.snapshots
        if held is None:  # each trajectory the pairs need, read once
            rows, row = np.unique(row, return_inverse=True)
            held = self.trajectories(rows)
        x = held[row, first]
        t = np.broadcast_to(self.lead_time(first, last).reshape(-1, *[1] * (x.ndim - 1)),
                            (*x.shape[:-1], 1))
        return np.concatenate([x, t], axis=-1), held[row, last]

    def batches(self, batch_size: int, order: np.ndarray | None = None,
                drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(x, y)`` batches in ``order`` (positions within the split; default: in turn)."""
        order = np.arange(len(self)) if order is None else order
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        for start in range(0, stop, batch_size):
            yield self.read(order[start:start + batch_size])

    def fit_normalizers(self) -> tuple[Normalizer, Normalizer]:
        """Per-field mean and std over every snapshot of the split (float64); the lead-time
        channel of ``x`` is left as it is.

        Summed per chunk of :data:`~nopx.training.data.NORM_CHUNK` trajectories, each process
        of several over its share of the chunks (so call it in every process), and combined
        in chunk order: the same bits whatever the number of processes, and the float32
        values of a mean and std over the whole array (two-pass, as ``np.std``).
        """
        fields = moments_normalizer(gather_chunk_sums(len(self.indices), self.process,
                                                      self.snapshot_moments))
        return with_lead_time(fields), fields

    def snapshot_moments(self, chunks: range) -> np.ndarray:
        """``(len(chunks), C, 3)`` float64: per chunk of :data:`~nopx.training.data.NORM_CHUNK`
        trajectories (consecutive chunk numbers) and per field, the (count, sum, sum of
        squared deviations from the chunk's mean) of its snapshots' values."""
        rows = []
        for chunk in chunks:
            held = self.trajectories(np.arange(chunk * NORM_CHUNK,
                                               min((chunk + 1) * NORM_CHUNK, len(self.indices))))
            values = held.reshape(-1, held.shape[-1]).astype(np.float64)
            total = values.sum(axis=0)
            rows.append(np.stack([np.full(len(total), float(len(values))), total,
                                  np.square(values - total / len(values)).sum(axis=0)], axis=-1))
        return np.array(rows, np.float64).reshape(len(chunks), len(self.fields), 3)


def moments_normalizer(moments: np.ndarray) -> Normalizer:
    """Mean and std per channel from the :meth:`PairSplit.snapshot_moments` of every chunk
    ``(chunks, C, 3)``, added in chunk order (the order fixes the float64 rounding): the
    chunks' sums give the mean, their squared deviations plus each chunk's count times its
    mean's squared offset give the variance (exact in exact arithmetic, stable in float64)."""
    count, total = np.zeros(moments.shape[1]), np.zeros(moments.shape[1])
    for chunk in moments:
        count += chunk[:, 0]
        total += chunk[:, 1]
    mean = total / count
    squares = np.zeros(moments.shape[1])
    for chunk in moments:
        squares += chunk[:, 2] + chunk[:, 0] * np.square(chunk[:, 1] / chunk[:, 0] - mean)
    return Normalizer(mean.astype(np.float32),
                      np.maximum(np.sqrt(squares / count), 1e-8).astype(np.float32))


def with_lead_time(fields: Normalizer) -> Normalizer:
    """The input normaliser: the fields' one, then mean 0, std 1 for the lead time."""
    return Normalizer(np.append(fields.mean, np.float32(0.0)),
                      np.append(fields.std, np.float32(1.0)))


def identity_normalizers(n_fields: int) -> tuple[Normalizer, Normalizer]:
    """``(x, y)`` normalisers that change nothing: ``n_fields`` (+ the lead time) channels."""
    return with_lead_time(Normalizer.identity(n_fields)), Normalizer.identity(n_fields)
