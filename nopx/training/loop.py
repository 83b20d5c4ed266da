"""``nopx train``: data, model, optimizer, the epoch loop, metrics and checkpoints.

Resuming is exact: the data order of epoch ``e`` comes from ``(seed, e)`` alone and
checkpoints are taken at epoch ends with parameters and optimizer state, so a run killed
and resumed ends with the same weights as one that ran straight through.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nopx import __version__
from nopx.config import Config, dump, from_mapping, read_yaml
from nopx.errors import UserError
from nopx.parallel import data_mesh, replicate, shard_batch
from nopx.progress import Progress
from nopx.training import tasks
from nopx.training.build import build_model, check_modes, model_kwargs
from nopx.training.checkpoint import Checkpoints
from nopx.training.data import Normalizer, Split, load_splits
from nopx.training.dataset import ensure_dataset
from nopx.training.optim import make_optimizer
from nopx.training.refine_stage import spectral_refine
from nopx.training.steps import Steps, evaluate, loss_function


class MetricsLog:
    """``metrics.jsonl``: one JSON object per event (``step``, ``epoch``, ``train/...``)."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def truncate_after(self, epoch: int) -> None:
        """Drop events past ``epoch`` (written after the checkpoint a resume starts from)."""
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line)["epoch"] <= epoch]
        self.path.write_text("".join(line + "\n" for line in keep))

    def write(self, event: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(event) + "\n")


def _check_resumable(cfg: Config, run_dir: pathlib.Path) -> None:
    """A resumed run must have the config it started with (more epochs are allowed)."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.exists():
        return
    saved = from_mapping(read_yaml(saved_path), where=str(saved_path))
    if dump(_with_epochs(saved, cfg.train.epochs)) != dump(cfg):
        raise UserError(f"{saved_path}: --resume with a config that differs from the run's; "
                        "resume with the same config (only train.epochs may grow) or start a new "
                        "run with --set train.run_dir=...")


def _with_epochs(cfg: Config, epochs: int) -> Config:
    import dataclasses

    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs))


def train_and_evaluate(cfg: Config, *, resume: bool = False) -> dict[str, float]:
    """Train ``cfg`` end to end and return the final metrics.

    Creates the dataset from ``data.generate`` if ``data.path`` is missing, writes
    ``config.yaml``, ``metrics.jsonl`` and checkpoints into ``cfg.run_dir``.
    """
    run_dir = cfg.run_dir
    where = f"run {cfg.name}"
    checkpoints_exist = (run_dir / "checkpoints" / "latest").exists() and any(
        (run_dir / "checkpoints" / "latest").iterdir())
    if checkpoints_exist and not resume:
        raise UserError(f"{run_dir}: holds checkpoints of an earlier run; pass --resume to "
                        f"continue it, or --set train.run_dir=<new dir> to start another")
    if resume:
        _check_resumable(cfg, run_dir)
    progress = Progress(label=f"train {cfg.name}")
    ensure_dataset(cfg.data, log=progress.log)
    train, test = load_splits(cfg.data)
    if len(train) < cfg.train.batch_size:
        raise UserError(f"{where}: train.batch_size {cfg.train.batch_size} exceeds data.n_train "
                        f"{len(train)}; lower the batch size")
    x_norm, y_norm = train.fit_normalizers() if cfg.data.normalize else (
        Normalizer.identity(len(cfg.data.inputs)), Normalizer.identity(len(cfg.data.targets)))

    spatial = _spatial_shape(train)
    kwargs = model_kwargs(cfg.model.kwargs, *tasks.channels(cfg.data, train.output_steps))
    check_modes(kwargs, tasks.model_grid(cfg.data, spatial, train.output_steps), where=where)
    model = build_model(cfg.model.name, kwargs, seed=cfg.seed, where=where)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    steps_per_epoch = len(train) // cfg.train.batch_size
    total_steps = steps_per_epoch * cfg.train.epochs
    tx = make_optimizer(cfg.optim, steps_per_epoch, total_steps)
    opt_state = tx.init(params)
    steps = Steps(graphdef, rest, tx, loss_function(cfg.loss), x_norm, y_norm,
                  tasks.make_apply(cfg.data, train.output_steps))

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump(cfg))
    metrics_log = MetricsLog(run_dir / "metrics.jsonl")
    checkpoints = Checkpoints(run_dir, cfg.checkpoint)
    meta = {"model": {"name": cfg.model.name, "kwargs": kwargs},
            "output_steps": train.output_steps,
            "normalizers": {"x": x_norm.to_json(), "y": y_norm.to_json()},
            "nopx_version": __version__}
    start_epoch, step = 0, 0
    if resume and checkpoints.latest_step() is not None:
        state, saved = checkpoints.restore({"params": params, "opt_state": opt_state})
        params, opt_state = state["params"], state["opt_state"]
        start_epoch, step = saved["epoch"], saved["step"]
        metrics_log.truncate_after(start_epoch)
        progress.log(f"resumed {run_dir} at epoch {start_epoch}, step {step}")
    elif not resume:
        metrics_log.path.unlink(missing_ok=True)

    mesh = data_mesh(cfg.mesh.data, cfg.train.batch_size)
    params, opt_state = replicate(mesh, (params, opt_state))
    progress.log(f"{cfg.model.name}: {_count(params):,} parameters; {len(train)} train / "
                 f"{len(test)} test samples of grid {spatial}; {cfg.train.epochs} epochs of "
                 f"{steps_per_epoch} steps; {jax.devices()[0].platform} x{1 if mesh is None else mesh.size}")
    metrics: dict[str, float] = {}
    try:
        for epoch in range(start_epoch, cfg.train.epochs):
            started = time.perf_counter()
            order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train))
            epoch_losses = []
            for x, y in train.batches(cfg.train.batch_size, order, drop_last=True):
                params, opt_state, loss = steps.train_step(params, opt_state, shard_batch(mesh, x),
                                                           shard_batch(mesh, y))
                epoch_losses.append(loss)
                step += 1
                _report_step(progress, cfg, step, total_steps, epoch, loss)
            metrics = {"train/loss": float(jnp.mean(jnp.stack(epoch_losses))),
                       "train/seconds": time.perf_counter() - started}
            last = epoch + 1 == cfg.train.epochs
            if (epoch + 1) % cfg.train.eval_every == 0 or last:
                test_metrics = evaluate(steps, params, test, cfg.train.batch_size, mesh)
                per_step = test_metrics.pop("rel_l2_per_channel")
                metrics.update({f"test/{k}": v for k, v in test_metrics.items()})
            metrics_log.write({"step": step, "epoch": epoch + 1, **metrics})
            progress.log(f"epoch {epoch + 1}/{cfg.train.epochs} step {step} "
                         + " ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
            if (epoch + 1) % cfg.checkpoint.every == 0 or last:
                checkpoints.save(step, {"params": params, "opt_state": opt_state},
                                 {**meta, "epoch": epoch + 1, "step": step}, metrics)
    finally:
        checkpoints.close()
        progress.close()
    if cfg.data.time is not None and metrics:
        progress.log("test rel L2 per predicted step: "
                     + " ".join(f"{value:.3g}" for value in per_step))
    for stage in cfg.stages:
        refined = spectral_refine(cfg, stage, nnx.merge(graphdef, params, rest), test)
        metrics_log.write({"step": step, "epoch": cfg.train.epochs, "stage": stage.name, **refined})
        progress.log(f"stage {stage.name}: " + " ".join(f"{k} {v:.4g}" for k, v in refined.items()))
        metrics.update(refined)
    return metrics


def _report_step(progress: Progress, cfg: Config, step: int, total: int, epoch: int,
                 loss: jax.Array) -> None:
    if progress.interactive:
        progress.update_count(step, total, f"epoch {epoch + 1}")
    elif step % cfg.train.log_every == 0:
        progress.log(f"step {step}/{total} epoch {epoch + 1} train/loss {float(loss):.4g}")


def _spatial_shape(split: Split) -> tuple[int, ...]:
    x, _ = next(split.batches(1))
    return tuple(x.shape[1:-1])


def _count(params: nnx.State) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
