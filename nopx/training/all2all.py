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
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator, Sequence

import numpy as np
import yaml

from nopx.config import TimeConfig
from nopx.errors import UserError
from nopx.training.data import Normalizer, read_fields


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
    """The all2all samples of the trajectories ``indices`` (held in memory).

    Args:
      path, format: the dataset (:func:`nopx.datagen.open_dataset`).
      fields: trajectory fields ``(T, *spatial)``, stacked as channels.
      indices: dataset indices of the trajectories.
      time: the all2all settings.
      subsample: keep every k-th grid point per spatial axis.
      time_scale: the lead-time unit; ``None``: ``time.time_scale``, else the span of the
        snapshots.
    """

    output_steps = 1   # one state out: what a trajectory task's run metadata records

    def __init__(self, path: pathlib.Path, fields: Sequence[str], indices: Sequence[int],
                 time: TimeConfig, *, subsample: int = 1, format: str = "auto",
                 time_scale: float | None = None) -> None:
        self.path, self.fields, self.time = pathlib.Path(path), tuple(fields), time
        self.indices = np.asarray(indices, dtype=np.int64)
        arrays, attrs = read_fields(self.path, format, self.fields, self.indices, subsample,
                                    time_axis=True)
        n_slices = next(iter(arrays.values())).shape[1]
        try:
            slices = snapshot_slices(time, n_slices)
        except ValueError as err:
            raise UserError(f"{self.path}: {err}") from None
        # (n, K + 1, *spatial, C): the snapshots of every trajectory, fields as channels
        self.snapshots = np.stack([arrays[f][:, slices] for f in self.fields], axis=-1)
        self.times = dataset_times(attrs, n_slices)[slices]
        span = float(self.times[-1] - self.times[0])
        self.time_scale = float(time_scale or time.time_scale or span)
        self.pairs = pair_table(len(slices), time, self.indices)

    def __len__(self) -> int:
        return len(self.pairs)

    def lead_time(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Scaled lead times of snapshot pairs ``(first, last)``."""
        return ((self.times[last] - self.times[first]) / self.time_scale).astype(np.float32)

    def read(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``x (n, *spatial, C + 1)`` (fields, lead time), ``y (n, *spatial, C)``."""
        row, first, last = self.pairs[np.asarray(positions)].T
        x = self.snapshots[row, first]
        t = np.broadcast_to(self.lead_time(first, last).reshape(-1, *[1] * (x.ndim - 1)),
                            (*x.shape[:-1], 1))
        return np.concatenate([x, t], axis=-1), self.snapshots[row, last]

    def batches(self, batch_size: int, order: np.ndarray | None = None,
                drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(x, y)`` batches in ``order`` (positions within the split; default: in turn)."""
        order = np.arange(len(self)) if order is None else order
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        for start in range(0, stop, batch_size):
            yield self.read(order[start:start + batch_size])

    def fit_normalizers(self) -> tuple[Normalizer, Normalizer]:
        """Per-field mean and std over every snapshot of the split (float64); the lead-time
        channel of ``x`` is left as it is."""
        values = self.snapshots.reshape(-1, self.snapshots.shape[-1]).astype(np.float64)
        fields = Normalizer(values.mean(axis=0).astype(np.float32),
                            np.maximum(values.std(axis=0), 1e-8).astype(np.float32))
        return with_lead_time(fields), fields


def with_lead_time(fields: Normalizer) -> Normalizer:
    """The input normaliser: the fields' one, then mean 0, std 1 for the lead time."""
    return Normalizer(np.append(fields.mean, np.float32(0.0)),
                      np.append(fields.std, np.float32(1.0)))


def identity_normalizers(n_fields: int) -> tuple[Normalizer, Normalizer]:
    """``(x, y)`` normalisers that change nothing: ``n_fields`` (+ the lead time) channels."""
    return with_lead_time(Normalizer.identity(n_fields)), Normalizer.identity(n_fields)
