"""``nopx train``: data, model, optimizer, the epoch loop, metrics and checkpoints.

The splits are honest: the best checkpoint is chosen on a validation split drawn from the
training pool, and the test split is evaluated once, at the end, on that checkpoint
(``summary.json`` and the last line of ``metrics.jsonl``).

Resuming is exact at step granularity: the data order of epoch ``e`` comes from
``(seed, e)`` alone, and a checkpoint (every epoch, and every ``checkpoint.every_steps``
steps) holds parameters, optimizer state, the position within the epoch and the losses of
the epoch so far. A run killed and resumed ends with the same weights and metrics as one
that ran straight through. The learning-rate schedule is part of the run
(``schedule.json``): a resume that would change it is refused; ``extend`` appends a new,
documented phase instead (:mod:`nopx.training.optim`). ``train.time_limit`` stops training
at the end of the first epoch past a wall-clock budget; the checkpoints carry the training
time, so a resumed run's budget is for the whole run (:class:`~nopx.config.TrainConfig`).

The same run scales out unchanged: ``mesh: {data, model}`` shards the batch and the model's
parameters (:mod:`nopx.parallel`), and in a multi-process run (:mod:`nopx.distributed`)
every process reads only its rows of each batch (:mod:`nopx.training.prefetch`), all of
them write the orbax checkpoints together, and process 0 alone writes ``config.yaml``,
``metrics.jsonl``, ``summary.json`` and the log. The run directory must be on a file
system every host sees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nopx import __version__
from nopx.config import Config, dump, from_mapping, read_yaml
from nopx.datagen.faults import fault_point
from nopx.errors import UserError
from nopx.parallel import StepShardings, check_batch, device_bytes, make_mesh, place, sync, to_host
from nopx.progress import Progress
from nopx.training import tasks
from nopx.imports import import_modules
from nopx.training.build import (build_loss, build_model, check_model_fits, check_modes,
                                 model_kwargs, sharding_rules)
from nopx.training.checkpoint import Checkpoints
from nopx.training.data import Splits, load_splits
from nopx.training.dataset import ensure_dataset
from nopx.training.divergence import Diverged, DivergenceWatch
from nopx.training.evaluate import load_run
from nopx.training.finetune import lr_multipliers, transfer
from nopx.training.online import OnlineSplit
from nopx.training.optim import make_optimizer
from nopx.training.prefetch import BatchLoader, Prefetch
from nopx.training.refine_stage import check_refine_stage, spectral_refine
from nopx.training.source import epoch_batches, epoch_order
from nopx.training.steps import Steps, evaluate

FINAL_EVENTS = ("test", "stage")  # written after training; recomputed by a resume


class MetricsLog:
    """``metrics.jsonl``: one JSON object per event (``step``, ``epoch``, ``train/...``).

    Only the ``writer`` (process 0 of a multi-process run) changes the file.
    """

    def __init__(self, path: pathlib.Path, *, writer: bool = True) -> None:
        self.path = path
        self.writer = writer

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate_after(self, step: int) -> None:
        """Drop events past ``step`` (written after the checkpoint a resume starts from) and
        the end-of-run events (the resumed run writes them again)."""
        if not self.writer or not self.path.exists():
            return
        keep = [e for e in self.read() if e["step"] <= step and e.get("event") not in FINAL_EVENTS]
        _write_atomic(self.path, "".join(json.dumps(e) + "\n" for e in keep))

    def write(self, event: dict[str, Any]) -> None:
        if not self.writer:
            return
        line = memoryview((json.dumps(event) + "\n").encode())
        # Unbuffered, so a failed write can be undone: no half line for a resume to trip over.
        with _disk_full_is_user_error(self.path), open(self.path, "ab", buffering=0) as handle:
            start = handle.tell()
            try:
                while line:
                    line = line[handle.write(line):]
            except OSError:
                handle.truncate(start)
                raise


@dataclasses.dataclass
class Position:
    """Where a run stands: saved in every checkpoint so a resume continues mid-epoch."""

    step: int = 0
    lr_scale: float = 1.0
    rollbacks: int = 0
    epoch_losses: list = dataclasses.field(default_factory=list)  # this epoch's, so far
    seconds: float = 0.0  # wall-clock training time so far (train.time_limit)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "lr_scale": self.lr_scale, "rollbacks": self.rollbacks,
                "epoch_losses": [float(v) for v in self.epoch_losses], "seconds": self.seconds}

    @classmethod
    def from_json(cls, meta: dict[str, Any]) -> "Position":
        return cls(meta["step"], meta.get("lr_scale", 1.0), meta.get("rollbacks", 0),
                   [np.float32(v) for v in meta.get("epoch_losses", [])],
                   meta.get("seconds", 0.0))


@contextlib.contextmanager
def _disk_full_is_user_error(path: pathlib.Path) -> Iterator[None]:
    """A full disk while writing ``path`` (a run file) is a :class:`UserError` naming it."""
    try:
        yield
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise UserError(f"{path}: the disk is full; free space (or move train.run_dir) and "
                        "rerun with --resume: the run continues from its last checkpoint") from None


def _write_atomic(path: pathlib.Path, text: str) -> None:
    """Write via a temporary file and rename: a kill leaves the old or the new file whole."""
    tmp = path.with_name(path.name + ".tmp")
    with _disk_full_is_user_error(path):
        tmp.write_text(text)
        os.replace(tmp, path)


def _check_resumable(cfg: Config, run_dir: pathlib.Path) -> None:
    """A resumed run must have exactly the config it started with."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.exists():
        return
    saved = from_mapping(read_yaml(saved_path), where=str(saved_path))
    # The time budget may change: a larger one continues a run that stopped on it.
    saved = dataclasses.replace(saved, train=dataclasses.replace(
        saved.train, time_limit=cfg.train.time_limit))
    if dump(saved) == dump(cfg):
        return
    if saved.train.epochs != cfg.train.epochs and dump(_with_epochs(saved, cfg.train.epochs)) == dump(cfg):
        raise UserError(f"{saved_path}: the run was started with train.epochs {saved.train.epochs}; "
                        f"resuming with {cfg.train.epochs} would change its learning-rate schedule. "
                        f"Resume with train.epochs {saved.train.epochs}, or train more epochs under a "
                        f"new schedule with --extend N (see README)")
    raise UserError(f"{saved_path}: --resume with a config that differs from the run's; "
                    "resume with the same config, or start a new run with "
                    "--set train.run_dir=...")


class _Silent:
    """The log stream of the processes after the first: only process 0 reports."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _with_epochs(cfg: Config, epochs: int) -> Config:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs))


def _schedule(cfg: Config, run_dir: pathlib.Path, steps_per_epoch: int,
              latest_step: int | None, extend: int | None) -> dict[str, Any]:
    """The run's schedule record (``steps_per_epoch``, epochs per ``phases``): a new run's,
    or the one in ``schedule.json``, with the ``extend`` phase appended."""
    path = run_dir / "schedule.json"
    if latest_step is None or not path.exists():
        record = {"steps_per_epoch": steps_per_epoch, "phases": [cfg.train.epochs]}
    else:
        record = json.loads(path.read_text())
        if record["steps_per_epoch"] != steps_per_epoch:
            raise UserError(f"{path}: the run took {record['steps_per_epoch']} steps per epoch, "
                            f"the data now gives {steps_per_epoch}; resume with the run's data")
    if extend is not None:
        planned = steps_per_epoch * sum(record["phases"])
        if (latest_step or 0) < planned:
            raise UserError(f"{run_dir}: the run has not finished its schedule (step "
                            f"{latest_step or 0} of {planned}); finish it with --resume first, "
                            f"then --extend")
        record["phases"].append(extend)
    return record


def train_and_evaluate(cfg: Config, *, resume: bool = False,
                       extend: int | None = None) -> dict[str, Any]:
    """Train ``cfg`` end to end and return the final metrics (test metrics of the best
    checkpoint included).

    Creates the dataset from ``data.generate`` if ``data.path`` is missing, writes
    ``config.yaml``, ``schedule.json``, ``metrics.jsonl``, ``summary.json`` and checkpoints
    into ``cfg.run_dir``. ``resume`` continues a killed run; ``extend`` (implies resume)
    trains ``extend`` more epochs of a finished run under a restarted schedule.
    """
    return _Run(cfg, resume=resume or extend is not None, extend=extend).fit()


class _Run:
    """One training run: set up from the config, then :meth:`fit`."""

    def __init__(self, cfg: Config, *, resume: bool, extend: int | None) -> None:
        self.cfg = cfg
        run_dir = cfg.run_dir
        where = f"run {cfg.name}"
        latest_dir = run_dir / "checkpoints" / "latest"
        has_checkpoints = latest_dir.exists() and any(latest_dir.iterdir())
        if has_checkpoints and not resume:
            raise UserError(f"{run_dir}: holds checkpoints of an earlier run; pass --resume to "
                            f"continue it, or --set train.run_dir=<new dir> to start another")
        if resume:
            _check_resumable(cfg, run_dir)
        import_modules(cfg.imports, where=where)
        # In a multi-process run (nopx.distributed) only process 0 writes files and logs.
        self.primary = jax.process_index() == 0
        self.progress = Progress(label=f"train {cfg.name}",
                                 stream=None if self.primary else _Silent())
        if self.primary:
            ensure_dataset(cfg.data, log=self.progress.log)
        sync("nopx-dataset")  # the other processes read the file process 0 may have written
        self.splits: Splits = load_splits(cfg.data, seed=cfg.seed)
        self.online = OnlineSplit(cfg.data, self.splits.train, seed=cfg.seed,
                                  batch_size=cfg.train.batch_size, where=where,
                                  log=self.progress.log) if cfg.data.online else None
        if self.online is not None:  # train on streamed samples; validate and test on the file
            self.splits = self.splits._replace(train=self.online)
        self._check_splits(where)
        train = self.splits.train
        x_norm, y_norm = (train.fit_normalizers() if cfg.data.normalize
                          else tasks.identity_normalizers(cfg.data))
        with_time = tasks.takes_time(cfg.model.name, cfg.model.kwargs)
        first_x, first_y = next(train.batches(1))  # one sample: the grid, and the shape check
        self.spatial = tuple(first_x.shape[1:-1])
        kwargs = model_kwargs(cfg.model.kwargs, *tasks.channels(cfg.data, train.output_steps,
                                                                    with_time),
                              where=where)
        check_modes(kwargs, tasks.model_grid(cfg.data, self.spatial, train.output_steps),
                    where=where)
        model = build_model(cfg.model.name, kwargs, seed=cfg.seed, where=where)
        tasks.check_per_patch(model, cfg.data, with_time, where=where)
        for stage in cfg.stages:
            check_refine_stage(cfg, stage, model)
        self.graphdef, params, self.rest = nnx.split(model, nnx.Param, ...)
        if cfg.init_from is not None and not has_checkpoints:
            params = self._initialise_from(params)

        # Everything is checked before the run directory is touched.
        self.checkpoints = Checkpoints(run_dir, cfg.checkpoint, writer=True) if has_checkpoints else None
        latest_step = self.checkpoints.latest_step() if has_checkpoints else None
        self.steps_per_epoch = len(train) // cfg.train.batch_size
        schedule = _schedule(cfg, run_dir, self.steps_per_epoch, latest_step, extend)
        self.phases = schedule["phases"]
        self.epochs = sum(self.phases)
        self.total_steps = self.steps_per_epoch * self.epochs
        tx = make_optimizer(cfg.optim, self.steps_per_epoch, self.phases)
        loss = build_loss(cfg.loss.name, cfg.loss.kwargs, where=where)
        multipliers = lr_multipliers(params, cfg.optim.group_lr) if cfg.optim.group_lr else None
        self.mesh = make_mesh(cfg.mesh.data, cfg.mesh.model, where=where)
        check_batch(self.mesh, cfg.train.batch_size, where=where)
        shardings = StepShardings.build(self.mesh, params, tx, sharding_rules(cfg.model.name))
        self.steps = Steps(self.graphdef, self.rest, tx, loss, x_norm, y_norm,
                           tasks.make_apply(cfg.data, train.output_steps, with_time), multipliers,
                           shardings)
        check_model_fits(self.steps.predict, params, first_x, first_y,
                         name=cfg.model.name, where=where)

        sync("nopx-checked")  # every process has looked at the run directory as it was
        if self.primary:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(dump(cfg))
            _write_atomic(run_dir / "schedule.json", json.dumps(schedule) + "\n")
        fault_point("train_start")
        self.checkpoints = self.checkpoints or Checkpoints(run_dir, cfg.checkpoint, writer=True)
        self.metrics_log = MetricsLog(run_dir / "metrics.jsonl", writer=self.primary)
        self.meta = {"model": {"name": cfg.model.name, "kwargs": kwargs},
                     "output_steps": train.output_steps,
                     "time_scale": getattr(train, "time_scale", None),  # all2all lead-time unit
                     "normalizers": {"x": x_norm.to_json(), "y": y_norm.to_json()},
                     "nopx_version": __version__}
        self.pos = Position()
        # On the mesh before a restore, which then reads each array into its sharding.
        self.params, self.opt_state = place((params, tx.init(params)),
                                            (shardings.params, shardings.opt_state))
        self.watch = DivergenceWatch.for_params(params)
        self.clock = time.perf_counter()  # the training clock; fit restarts it
        self.stopped = False  # on train.time_limit
        if latest_step is not None:
            self._restore()
            self.progress.log(f"resumed {run_dir} at epoch {self.pos.step // self.steps_per_epoch}"
                              f", step {self.pos.step}")
        else:
            if self.primary:
                self.metrics_log.path.unlink(missing_ok=True)
                (run_dir / "summary.json").unlink(missing_ok=True)
            self._save(metrics=None)  # step 0: the first good state a rollback can return to

    def _initialise_from(self, params: nnx.State) -> nnx.State:
        """Copy the matching parameters of ``init_from``'s best checkpoint (fine-tuning)."""
        source = load_run(pathlib.Path(self.cfg.init_from), which="best")
        params, fresh = transfer(params, source.params)
        total = len(jax.tree.leaves(params))
        self.progress.log(f"initialised from {self.cfg.init_from} (checkpoint step "
                          f"{source.meta['step']}): {total - len(fresh)} of {total} parameter "
                          f"arrays copied" + (f"; re-initialised (shape or name differs): "
                                              f"{', '.join(fresh)}" if fresh else ""))
        return params

    def _check_splits(self, where: str) -> None:
        cfg, (train, val, _) = self.cfg, self.splits
        if len(train) < cfg.train.batch_size:
            raise UserError(f"{where}: train.batch_size {cfg.train.batch_size} exceeds the "
                            f"{len(train)} training samples (data.n_train minus the "
                            f"{len(val)} validation samples); lower the batch size")
        if not len(val) and (cfg.checkpoint.best_metric or "").startswith("val/"):
            raise UserError(f"{where}: data.n_val is 0, so there is no validation split for "
                            f"checkpoint.best_metric {cfg.checkpoint.best_metric}; set data.n_val "
                            "> 0, or checkpoint.best_metric: null (eval then uses the last checkpoint)")

    def _restore(self) -> None:
        """Load the latest checkpoint into the run (parameters, optimizer state, position)."""
        self.checkpoints.wait()
        state, saved = self.checkpoints.restore({"params": self.params, "opt_state": self.opt_state})
        self.params, self.opt_state = state["params"], state["opt_state"]
        self.pos = Position.from_json(saved)
        if self.online is not None:
            self.online.restore(saved["online"])
        self.metrics_log.truncate_after(self.pos.step)

    def _save(self, metrics: dict[str, float] | None, *, latest: bool = True) -> None:
        """Checkpoint the current state, after checking that every step since the last
        check was finite (a non-finite state is never saved)."""
        self.watch.check()
        self.pos.seconds = time.perf_counter() - self.clock
        meta = {**self.meta, **self.pos.to_json(), "epoch": self.pos.step // self.steps_per_epoch}
        if self.online is not None:
            meta["online"] = self.online.state()
        self.checkpoints.save(self.pos.step, {"params": self.params, "opt_state": self.opt_state},
                              meta, metrics, latest=latest)
        fault_point("train_save")  # the save is in flight (asynchronous)

    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        self.progress.log(
            f"{cfg.model.name}: {_count(self.params):,} parameters; {len(self.splits.train)} train "
            f"/ {len(self.splits.val)} val / {len(self.splits.test)} test samples of grid "
            f"{self.spatial}; {self.epochs} epochs of {self.steps_per_epoch} steps; "
            f"{jax.devices()[0].platform} x{self.mesh.size} (mesh data {self.mesh.shape['data']} "
            f"x model {self.mesh.shape['model']}, {jax.process_count()} processes); "
            f"{device_bytes(self.params) / 2**20:.2f} MiB of parameters per device")
        metrics: dict[str, Any] = {}
        # The clock counts training, not the setup, and goes on from a resumed checkpoint's;
        # a resumed run that had stopped on its time limit (at an epoch end) stays stopped.
        self.clock = time.perf_counter() - self.pos.seconds
        self.stopped = (self.pos.step > 0 and self.pos.step % self.steps_per_epoch == 0
                        and self._out_of_time())
        try:
            while self.pos.step < self.total_steps and not self.stopped:
                try:
                    metrics = self._epoch(self.pos.step // self.steps_per_epoch)
                except Diverged as bad:
                    self._recover(bad)
            metrics.update(self._final_test())
        finally:
            self.checkpoints.close()
            self.progress.close()
            if self.online is not None:
                self.online.close()
        return metrics

    def _epoch(self, epoch: int) -> dict[str, float]:
        """Train (the rest of) epoch ``epoch``; validate, log and checkpoint at its end."""
        cfg, pos, spe = self.cfg, self.pos, self.steps_per_epoch
        started = time.perf_counter()
        lr_scale = place(np.float32(pos.lr_scale), self.steps.shardings.replicated)
        with contextlib.closing(self._train_batches(epoch, pos.step - epoch * spe)) as batches:
            for x, y in batches:
                self.params, self.opt_state, loss, finite = self.steps.train_step(
                    self.params, self.opt_state, x, y, lr_scale)
                pos.step += 1
                fault_point("train_step")  # the step is dispatched, not yet finished
                pos.epoch_losses.append(loss)
                self.watch.record(pos.step, finite)
                self._report_step(epoch, loss)
                every = cfg.checkpoint.every_steps
                if every and pos.step % every == 0 and pos.step % spe:
                    self._save(metrics=None)
        self.watch.check()
        metrics = {"train/loss": float(jnp.mean(jnp.stack(pos.epoch_losses))),
                   "train/seconds": time.perf_counter() - started}
        if self.online is not None:
            metrics.update(self.online.metrics())
        pos.epoch_losses = []
        self.stopped = epoch + 1 < self.epochs and self._out_of_time()
        if self.stopped:
            self.progress.log(f"train.time_limit of {cfg.train.time_limit:g} min reached after "
                              f"epoch {epoch + 1} of {self.epochs}: stopping")
        last = epoch + 1 == self.epochs or self.stopped
        if len(self.splits.val) and ((epoch + 1) % cfg.train.eval_every == 0 or last):
            val = evaluate(self.steps, self.params, self.splits.val, cfg.train.batch_size, self.mesh)
            val.pop("rel_l2_per_channel")
            if not all(np.isfinite(v) for v in val.values()):
                raise Diverged(pos.step, True, [], detail="validation metrics are not finite")
            metrics.update({f"val/{k}": v for k, v in val.items()})
        self.metrics_log.write({"step": pos.step, "epoch": epoch + 1, **metrics})
        self.progress.log(f"epoch {epoch + 1}/{self.epochs} step {pos.step} "
                          + " ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        every = cfg.checkpoint.every_steps
        latest = ((epoch + 1) % cfg.checkpoint.every == 0 or last
                  or bool(every and pos.step % every == 0))
        self._save(metrics, latest=latest)
        return metrics

    def _out_of_time(self) -> bool:
        """Whether the training clock has passed ``train.time_limit`` (process 0's clock
        decides for every process, so all stop after the same epoch)."""
        limit = self.cfg.train.time_limit
        if limit is None:
            return False
        over = time.perf_counter() - self.clock >= 60.0 * limit
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            over = bool(multihost_utils.broadcast_one_to_all(np.bool_(over)))
        return over

    def _train_batches(self, epoch: int, first: int) -> Iterator[tuple[jax.Array, jax.Array]]:
        """Batches ``first, first + 1, ...`` of epoch ``epoch``, on the devices."""
        cfg, train = self.cfg, self.splits.train
        loader = BatchLoader(train, self.mesh)
        if self.online is not None:
            # A stream draws as it is read: read in step with training, so the stream state
            # a checkpoint saves is the one after the last step taken.
            order = epoch_order(cfg.seed, epoch, len(train))[first * cfg.train.batch_size:]
            return (loader.place(x, y)
                    for x, y in train.batches(cfg.train.batch_size, order, drop_last=True))
        return Prefetch(map(loader.load, epoch_batches(cfg.seed, epoch, len(train),
                                                       cfg.train.batch_size, first)))

    def _report_step(self, epoch: int, loss: jax.Array) -> None:
        step = self.pos.step
        if self.progress.interactive:
            self.progress.update_count(step, self.total_steps, f"epoch {epoch + 1}")
        elif step % self.cfg.train.log_every == 0:
            self.watch.check()
            self.progress.log(f"step {step}/{self.total_steps} epoch {epoch + 1} "
                              f"train/loss {float(loss):.4g}")

    def _recover(self, bad: Diverged) -> None:
        """Stop with a diagnosis, or roll back to the last good checkpoint at a lower rate."""
        cfg = self.cfg
        self.checkpoints.wait()
        good = self.checkpoints.latest_step()
        diagnosis = (f"run {cfg.name}: training diverged at {bad} (epoch "
                     f"{(bad.step - 1) // self.steps_per_epoch + 1}); the last good checkpoint "
                     f"is step {good} in {self.checkpoints.latest.directory}, and nothing "
                     "non-finite was saved")
        if cfg.train.on_nonfinite == "stop" or self.pos.rollbacks >= cfg.train.max_rollbacks:
            tried = (f" after {self.pos.rollbacks} rollbacks" if cfg.train.on_nonfinite == "rollback"
                     else "")
            raise UserError(f"{diagnosis}{tried}. Lower optim.lr, set optim.grad_clip, or set "
                            "train.on_nonfinite: rollback to continue from the last good "
                            "checkpoint with a lower learning rate")
        lr_scale = self.pos.lr_scale * cfg.train.rollback_lr_factor
        rollbacks = self.pos.rollbacks + 1
        self._restore()
        self.pos.lr_scale, self.pos.rollbacks = lr_scale, rollbacks
        self.metrics_log.write({"step": self.pos.step,
                                "epoch": self.pos.step // self.steps_per_epoch,
                                "event": "rollback", "diverged_at": bad.step,
                                "params": bad.params, "lr_scale": lr_scale})
        self.progress.log(f"{diagnosis}; rolled back to step {self.pos.step} with the learning "
                          f"rate scaled by {lr_scale:g} (rollback {rollbacks} of "
                          f"{cfg.train.max_rollbacks})")

    def _final_test(self) -> dict[str, Any]:
        """Evaluate the chosen checkpoint on the test split once; write ``summary.json``."""
        cfg = self.cfg
        self.checkpoints.wait()
        which = "best" if self.checkpoints.has_best() else "latest"
        state, saved = self.checkpoints.restore(
            {"params": self.params, "opt_state": self.opt_state}, which=which)
        params = state["params"]
        test = evaluate(self.steps, params, self.splits.test, cfg.train.batch_size, self.mesh)
        per_step = test.pop("rel_l2_per_channel")
        results: dict[str, Any] = {f"test/{k}": v for k, v in test.items()}
        if cfg.data.time is not None and cfg.data.time.mode != "all2all":  # all2all: nopx eval
            results["test/rel_l2_per_step"] = per_step
            self.progress.log("test rel L2 per predicted step: "
                              + " ".join(f"{value:.3g}" for value in per_step))
        stages = {}
        for stage in cfg.stages:
            refined = spectral_refine(cfg, stage,
                                      nnx.merge(self.graphdef, to_host(params), self.rest),
                                      self.splits.test)
            self.metrics_log.write({"step": self.pos.step, "epoch": self.epochs, "event": "stage",
                                    "stage": stage.name, **refined})
            self.progress.log(f"stage {stage.name}: "
                              + " ".join(f"{k} {v:.4g}" for k, v in refined.items()))
            stages[stage.name] = refined
        chosen = {"which": which, "step": saved["step"], "epoch": saved["epoch"],
                  **{k: v for event in self.metrics_log.read() if event["step"] == saved["step"]
                     and "event" not in event for k, v in event.items() if k.startswith("val/")}}
        self.metrics_log.write({"step": self.pos.step, "epoch": self.epochs, "event": "test",
                                "checkpoint_step": saved["step"], **results})
        fault_point("train_final")
        summary = {"name": cfg.name, "checkpoint": chosen,
                   "selected_by": cfg.checkpoint.best_metric if which == "best" else "last",
                   "samples": {name: len(split) for name, split in self.splits._asdict().items()},
                   "epochs": self.epochs, "steps": self.pos.step, "schedule_phases": self.phases,
                   "rollbacks": self.pos.rollbacks, "time_limit": self._time_record(),
                   "test": results, "stages": stages,
                   "nopx_version": __version__}
        if self.primary:
            _write_atomic(cfg.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        self.progress.log(f"test on the {which} checkpoint (step {saved['step']}): "
                          + " ".join(f"{k} {v:.4g}" for k, v in results.items()
                                     if not isinstance(v, list)))
        merged: dict[str, Any] = {**results}
        for refined in stages.values():
            merged.update(refined)
        return merged

    def _time_record(self) -> dict[str, Any] | None:
        """``summary.json``'s ``time_limit``: the budget, whether the run stopped on it, the
        epochs done and the training seconds to the last checkpoint; ``None`` without a
        budget (a summary without wall times stays the same when a run is killed and
        resumed)."""
        if self.cfg.train.time_limit is None:
            return None
        return {"minutes": self.cfg.train.time_limit, "stopped": self.stopped,
                "epochs_done": self.pos.step // self.steps_per_epoch,
                "seconds": round(self.pos.seconds, 1)}


def _count(params: nnx.State) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
