"""Online training data: fresh samples of the dataset's recipe, streamed past the model.

With ``data.online: true`` the training split is not the file's: producer processes run
the ``data.generate`` recipe (:class:`~nopx.datagen.stream.SampleStream`) and training
draws its batches from a bounded buffer they keep refilling, so a run sees many more
samples than fit on disk (Meyer et al., "Training Deep Surrogate Models with Large Scale
Online Learning", ICML 2023, whose reservoir this follows). Validation and test stay the
file's samples, so an online and a fixed-file run of one config are judged on the same data.

The policy:

- **Stream.** Global sample indices from the end of the file's range on (the larger of
  the file's and the recipe's ``first_index + samples``): no streamed sample is ever a
  validation or test sample. The recipe must be the one that made the file (up to its
  size, output and solver settings).
- **Buffer.** ``data.online_buffer`` = ``B`` slots; sample ``i`` lives in slot
  ``(i - start) % B``, so a new sample replaces the one ``B`` before it (first in, first
  out). The first fill is samples ``start .. start + B - 1``, whatever the timing; the
  normalisers are fitted on it.
- **Refill.** ``online_workers: 0``: ``online_per_step`` new samples are made in the training
  process before every step (0: the first fill is all it ever sees). ``online_workers: K``:
  every sample that arrived before the step is taken in.
- **Draws.** Each step draws ``batch_size`` distinct slots uniformly, from
  ``(seed, step)``; across steps they are drawn with replacement. When the producers are
  slower than training a sample is reused until replaced; when faster, some leave the
  buffer unseen. ``metrics.jsonl`` records per epoch ``train/online_samples`` (taken into
  the buffer so far), ``train/online_seen`` (distinct samples drawn) and
  ``train/online_reuse`` (draws per distinct sample).
- **Epochs.** An epoch has the steps of the fixed-file run of the same config (the file's
  training split over ``batch_size``): the schedule, ``eval_every`` and checkpoints mean
  the same in both.
- **Reproducibility.** With ``online_workers: 0`` a run is a function of the config and its
  seed, and ``--resume`` is exact: the checkpoint stores the stream position and the draw
  counts, and a resume remakes the buffer from its indices. With workers the samples are
  the same (each block is made as :func:`~nopx.datagen.generate` makes it), but which of
  them are in the buffer at a given step depends on timing; a resume remakes the ``B``
  samples before the newest one taken in and continues after it (blocks in flight are
  skipped). A resume makes ``2 B`` samples before its first step (the first fill, for the
  normalisers, and the buffer).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
import yaml

from nopx.config import DataConfig
from nopx.errors import UserError
from nopx.training.data import Split

__all__ = ["OnlineSplit"]

#: Mixed into the draw seed, so the draws differ from every other use of the run's seed.
DRAW_KEY = 0x0711E

# Recipe keys that may differ between the file's recipe and the stream's: they change which
# or how many samples are made, or how accurately they are solved, never their distribution.
_FREE_KEYS = ("out", "samples", "first_index", "solver", "imports")


class OnlineSplit(Split):
    """The training split of an online run: batches drawn from a buffer a stream refills.

    Args:
      cfg: the run's ``data`` section (``online``, ``generate``, ``online_*``).
      file_train: the file's training split (its layout: fields, time window, subsample;
        its length sets the epoch).
      seed: the run's seed (the draws).
      batch_size: ``train.batch_size``.
      where: names the run in error messages.
      log: where to report the stream's start.
    """

    def __init__(self, cfg: DataConfig, file_train: Split, *, seed: int, batch_size: int,
                 where: str = "online data", log: Callable[[str], None] = print) -> None:
        from nopx.datagen.stream import SampleStream

        super().__init__(file_train.path, file_train.inputs, file_train.targets, [], False,
                         file_train.time, file_train.output_steps, file_train.subsample,
                         file_train.format)
        if cfg.online_workers and jax.process_count() > 1:
            raise UserError(f"{where}: data.online_workers {cfg.online_workers}: a multi-process "
                            "run needs the same batches on every process, which timing-dependent "
                            "producers cannot give; set data.online_workers: 0")
        if cfg.online_buffer < batch_size:
            raise UserError(f"{where}: data.online_buffer {cfg.online_buffer} holds fewer samples "
                            f"than train.batch_size {batch_size}; raise data.online_buffer")
        recipe, self.start = _stream_recipe(cfg, file_train.path, where)
        self.epoch_size = len(file_train)
        self.seed, self.per_step, self.size = seed, cfg.online_per_step, cfg.online_buffer
        self.stream = SampleStream(recipe, self.start, fields=self.fields,
                                   workers=cfg.online_workers)
        self.raw: dict[str, np.ndarray] = {}  # {field: (B, *stored_shape)}, as stored
        self.slot_index = np.full(self.size, -1, dtype=np.int64)  # global index per slot
        self.slot_draws = np.zeros(self.size, dtype=np.int64)
        self.step = self.admitted = self.retired_seen = self.retired_draws = 0
        self.next_index = self.start  # one past the newest sample taken in
        self._pending: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []  # made, not taken in
        log(f"online data: {recipe.pde} samples from index {self.start} on, "
            f"{cfg.online_workers or 'no'} producer processes, a buffer of {self.size}")

    def __len__(self) -> int:
        return self.epoch_size

    def batches(self, batch_size: int, order: np.ndarray | None = None,
                drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Without ``order``: the buffer as it is, slot by slot (no draw, nothing refilled).

        With ``order`` (the loop's epoch order; only its length is used): one batch per
        ``batch_size`` entries, each refilled, then drawn (see the module doc); every draw
        is a whole batch, so a remainder is dropped with or without ``drop_last``.
        """
        if not self.admitted:
            self._fill(self.start)
        if order is None:
            for lo in range(0, self.size, batch_size):
                yield self._xy(np.arange(lo, min(lo + batch_size, self.size)))
            return
        for _ in range(len(order) // batch_size):
            self._refill()
            draw = np.random.default_rng([self.seed, DRAW_KEY, self.step])
            slots = draw.choice(self.size, batch_size, replace=False)
            self.slot_draws[slots] += 1
            self.step += 1
            yield self._xy(slots)

    def metrics(self) -> dict[str, float]:
        """``train/online_samples``, ``train/online_seen`` and ``train/online_reuse`` so far."""
        seen = self.retired_seen + int(np.count_nonzero(self.slot_draws))
        draws = self.retired_draws + int(self.slot_draws.sum())
        return {"train/online_samples": self.admitted, "train/online_seen": seen,
                "train/online_reuse": draws / max(seen, 1)}

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps to resume the stream (JSON)."""
        return {"next_index": self.next_index, "step": self.step, "admitted": self.admitted,
                "retired_seen": self.retired_seen, "retired_draws": self.retired_draws,
                "slot_draws": self.slot_draws.tolist()}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's :meth:`state`: remake the buffer, then go on after it."""
        self._fill(state["next_index"] - self.size)
        self.step, self.admitted = state["step"], state["admitted"]
        self.retired_seen, self.retired_draws = state["retired_seen"], state["retired_draws"]
        self.slot_draws = np.asarray(state["slot_draws"], dtype=np.int64)

    def close(self) -> None:
        """Stop the producer processes."""
        self.stream.close()

    def _xy(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._to_xy({name: self.raw[name][slots] for name in self.fields},
                           self.slot_index[slots])

    def _fill(self, lo: int) -> None:
        """Make the buffer hold exactly samples ``lo .. lo + B - 1`` (later ones wait)."""
        self.stream.seek((lo - self.start) // self.stream.block)
        self._pending = []
        missing = self.size
        while missing:
            indices, fields = self.stream.next()
            inside = (indices >= lo) & (indices < lo + self.size)
            self._admit(indices[inside], {k: v[inside] for k, v in fields.items()})
            missing -= int(inside.sum())
            later = indices >= lo + self.size
            if later.any():
                self._pending.append((indices[later], {k: v[later] for k, v in fields.items()}))

    def _refill(self) -> None:
        """Take in the samples due before a step (see the module doc)."""
        if self.stream.workers:
            for indices, fields in self._pending + list(self.stream.ready()):
                self._admit(indices, fields)
            self._pending = []
            return
        due = self.per_step
        while due:
            if not self._pending:
                self._pending.append(tuple(self.stream.next()))
            indices, fields = self._pending[0]
            take = min(due, len(indices))
            self._admit(indices[:take], {k: v[:take] for k, v in fields.items()})
            if take == len(indices):
                self._pending.pop(0)
            else:
                self._pending[0] = (indices[take:], {k: v[take:] for k, v in fields.items()})
            due -= take

    def _admit(self, indices: np.ndarray, fields: dict[str, np.ndarray]) -> None:
        """Put samples ``indices`` into their slots, retiring the samples they replace."""
        self.admitted += len(indices)
        indices, fields = indices[-self.size:], {k: v[-self.size:] for k, v in fields.items()}
        if not self.raw:
            self.raw = {k: np.zeros((self.size, *v.shape[1:]), v.dtype) for k, v in fields.items()}
        slots = (indices - self.start) % self.size
        drawn = self.slot_draws[slots]
        self.retired_seen += int(np.count_nonzero(drawn))
        self.retired_draws += int(drawn.sum())
        for name, values in fields.items():
            self.raw[name][slots] = values
        self.slot_index[slots] = indices
        self.slot_draws[slots] = 0
        self.next_index = max(self.next_index, int(indices.max(initial=-1)) + 1)


def _stream_recipe(cfg: DataConfig, path: pathlib.Path, where: str) -> tuple[Any, int]:
    """The ``data.generate`` recipe and the first stream index, after checking that the
    recipe made ``path`` (else its samples would not be the validation/test distribution)."""
    from nopx.datagen import load_recipe, open_dataset
    from nopx.datagen.recipe import differing_keys

    recipe = load_recipe(cfg.generate)
    with open_dataset(path, format=cfg.format) as reader:
        attrs, total = reader.attrs, reader.n_samples
    if "recipe" not in attrs:
        raise UserError(f"{where}: {path}: not written by nopx datagen (no recipe inside); "
                        "data.online validates and tests on a file made by the data.generate "
                        f"recipe: make one with `nopx datagen --config {cfg.generate} --out {path}`")
    made = yaml.safe_load(attrs["recipe"])
    changed = [key for key in differing_keys(made, recipe.to_mapping())
               if key.split(".")[0] not in _FREE_KEYS]
    if changed:
        raise UserError(f"{where}: data.generate {cfg.generate}: {changed[0]} differs from the "
                        f"recipe that made data.path {path}; online samples must follow the recipe of the "
                        "validation and test samples: point data.generate at that recipe "
                        f"(`nopx info {path}` prints it)")
    start = max(int(attrs.get("first_index", 0)) + total, recipe.first_index + recipe.samples)
    return recipe, start
