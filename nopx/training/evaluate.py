"""``nopx eval``: rebuild a trained model from its run directory and measure it.

The run directory alone is enough: ``config.yaml`` names the data, the best checkpoint's
metadata names the model and its constructor arguments and holds the normalisers.
``--resolution N`` regenerates the test samples from the dataset's own recipe on an N-grid
(the same random coefficients, so the same functions, sampled finer or coarser) and
evaluates zero-shot.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, NamedTuple

import numpy as np
import yaml
from flax import nnx

from nopx.config import Config, from_mapping, read_yaml
from nopx.errors import UserError
from nopx.training import plots
from nopx.imports import import_modules
from nopx.training.build import build_loss, build_model
from nopx.training.checkpoint import Checkpoints
from nopx.training.data import Normalizer, Split
from nopx.training.optim import make_optimizer
from nopx.training.all2all import PairSplit
from nopx.training.tasks import make_apply, takes_time
from nopx.training.time_eval import lead_time_errors, run_predictor
from nopx.training.steps import Steps, evaluate


class LoadedRun(NamedTuple):
    """A trained run, ready to predict: ``steps.predict(params, x)``."""

    config: Config
    steps: Steps
    params: nnx.State
    meta: dict[str, Any]


def load_run(run_dir: pathlib.Path, *, which: str = "best") -> LoadedRun:
    """The run's config, its steps (model + normalisers), parameters and checkpoint metadata.

    ``which`` is ``"best"`` (by the tracked metric; the latest if none was tracked) or
    ``"latest"``.
    """
    run_dir = pathlib.Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"{run_dir}: not a run directory (no config.yaml); pass the directory "
                        "`nopx train` wrote, e.g. runs/darcy")
    cfg = from_mapping(read_yaml(config_path), where=str(config_path))
    import_modules(cfg.imports, where=str(config_path))
    checkpoints = Checkpoints(run_dir, cfg.checkpoint)
    try:
        if which == "best" and checkpoints.best.best_step() is None:
            which = "latest"
        meta = checkpoints.read_meta(which=which)
        model = build_model(meta["model"]["name"], meta["model"]["kwargs"], seed=cfg.seed,
                            where=str(config_path))
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        tx = make_optimizer(cfg.optim, 1, 1)
        state, _ = checkpoints.restore({"params": params, "opt_state": tx.init(params)},
                                       which=which)
    finally:
        checkpoints.close()
    norms = meta["normalizers"]
    loss = build_loss(cfg.loss.name, cfg.loss.kwargs, where=str(config_path))
    steps = Steps(graphdef, rest, tx, loss, Normalizer.from_json(norms["x"]),
                  Normalizer.from_json(norms["y"]),
                  make_apply(cfg.data, meta["output_steps"],
                             takes_time(meta["model"]["name"], meta["model"]["kwargs"])))
    return LoadedRun(cfg, steps, state["params"], meta)


def _regenerate_test(cfg: Config, source: pathlib.Path, resolution: int,
                     out_dir: pathlib.Path) -> pathlib.Path:
    """Regenerate the test samples of ``source`` on a ``resolution`` grid (cached)."""
    from nopx import datagen

    out = out_dir / f"{source.stem}_test_n{resolution}.h5"
    if out.exists():
        with datagen.open_dataset(out, require_complete=False) as reader:
            if reader.attrs.get("complete"):
                return out
    with datagen.open_dataset(source, format=cfg.data.format) as reader:
        if "recipe" not in reader.attrs or "source_format" in reader.attrs:
            raise UserError(f"{source}: --resolution regenerates the test samples from the dataset's "
                            "datagen recipe, and this file has none (it is, or was converted from, "
                            f"a {reader.attrs.get('source_format', reader.attrs.get('format'))} file); "
                            "evaluate on a finer file of the same samples with --data instead")
        recipe_text = str(reader.attrs["recipe"])
        total = reader.n_samples
    first = int(yaml.safe_load(recipe_text).get("first_index", 0)) + total - cfg.data.n_test
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe_path = out_dir / f"{source.stem}_recipe.yaml"
    recipe_path.write_text(recipe_text)
    recipe = datagen.load_recipe(recipe_path, [f"grid.n={resolution}", "grid.subsample=1",
                                               f"first_index={first}",
                                               f"samples={cfg.data.n_test}"])
    return datagen.generate(recipe, str(out), resume=out.exists())


def evaluate_run(run: str | pathlib.Path, *, data: str | None = None,
                 resolution: int | None = None, plot: bool = False) -> dict[str, Any]:
    """Evaluate a run's best checkpoint on its test split (or ``data``, or at ``resolution``).

    The run's ``data.subsample`` applies to its own dataset; ``data`` files and regenerated
    ``resolution`` data are used at the grid they are stored on. Prints and returns the
    metrics; writes them to ``eval.json`` in the run directory and, with ``plot``, PNGs of
    one test sample (input, target, prediction, error; for trajectories the error per
    step, snapshots and energy spectra).
    """
    run_dir = pathlib.Path(run)
    loaded = load_run(run_dir)
    cfg, steps, params, meta = loaded
    path = pathlib.Path(data or cfg.data.path)
    from nopx import datagen

    # The run's format names its own file; --data files and regenerated ones are detected.
    fmt = cfg.data.format if data is None and resolution is None else "auto"
    if resolution is not None:
        path = _regenerate_test(cfg, path, resolution, run_dir / "data")
    with datagen.open_dataset(path, format=fmt) as reader:
        total = reader.n_samples
    count = min(cfg.data.n_test, total)
    subsample = cfg.data.subsample if data is None and resolution is None else 1
    if cfg.data.time is not None and cfg.data.time.mode == "all2all":
        return _evaluate_all2all(loaded, run_dir, path, range(total - count, total), subsample,
                                 fmt, plot)
    split = Split(path, cfg.data.inputs, cfg.data.targets, range(total - count, total),
                  in_memory=True, time=cfg.data.time, output_steps=meta["output_steps"],
                  subsample=subsample, format=fmt)
    metrics = evaluate(steps, params, split, cfg.train.batch_size)
    per_channel = metrics.pop("rel_l2_per_channel")
    if cfg.data.time is not None:
        metrics["rel_l2_per_step"] = per_channel
    key = "x".join(str(n) for n in split.x.shape[1:-1])
    _record(run_dir, f"{path.name}@{key}", {"samples": count, **metrics})
    print(f"{run_dir} on {path} ({count} samples, grid {key}): "
          + "  ".join(f"test/{k} {v:.4g}" for k, v in metrics.items() if not isinstance(v, list)))
    if cfg.data.time is not None:
        print("test rel L2 per predicted step: " + " ".join(f"{v:.3g}" for v in per_channel))
    if plot:
        prediction = np.asarray(steps.predict(params, split.x[:1]))
        title = f"{cfg.name}: test sample {total - count} at {key}"
        if cfg.data.time is None:
            pngs = [plots.sample_panels(split.x[0], split.y[0], prediction[0],
                                        run_dir / f"eval_{key}.png", title=title)]
        else:
            pngs = [plots.error_per_step(per_channel, run_dir / f"eval_{key}_per_step.png",
                                         title=f"{cfg.name}: test rel. L2 per step at {key}"),
                    plots.trajectory_snapshots(split.y[0], prediction[0],
                                               run_dir / f"eval_{key}_snapshots.png", title=title),
                    plots.energy_spectra(split.y[0], prediction[0],
                                         run_dir / f"eval_{key}_spectra.png", title=title)]
        for png in pngs:
            print(f"wrote {png}")
    return metrics


def _record(run_dir: pathlib.Path, key: str, metrics: dict[str, Any]) -> None:
    """Add ``metrics`` under ``key`` to the run's ``eval.json``."""
    results_path = run_dir / "eval.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results[key] = metrics
    results_path.write_text(json.dumps(results, indent=2) + "\n")


def _evaluate_all2all(run: LoadedRun, run_dir: pathlib.Path, path: pathlib.Path,
                      indices: range, subsample: int, fmt: str, plot: bool) -> dict[str, Any]:
    """An all2all run: the metrics over every test pair, and the error against lead time
    from each trajectory's first snapshot, direct (one call per lead time) and
    autoregressive in steps of one snapshot interval (:mod:`nopx.training.time_eval`)."""
    cfg = run.config
    split = PairSplit(path, cfg.data.inputs, indices, cfg.data.time, subsample=subsample,
                      format=fmt, time_scale=run.meta["time_scale"])
    metrics: dict[str, Any] = evaluate(run.steps, run.params, split, cfg.train.batch_size)
    metrics["rel_l2_per_field"] = metrics.pop("rel_l2_per_channel")
    metrics.update(lead_time_errors(run_predictor(run), split.snapshots, split.times,
                                    cfg.train.batch_size))
    key = "x".join(str(n) for n in split.snapshots.shape[2:-1])
    _record(run_dir, f"{path.name}@{key}", {"samples": len(indices), "pairs": len(split),
                                            **metrics})
    print(f"{run_dir} on {path} ({len(indices)} trajectories, {len(split)} pairs, grid {key}): "
          + "  ".join(f"test/{k} {v:.4g}" for k, v in metrics.items() if not isinstance(v, list)))
    print("lead time      " + " ".join(f"{v:8.3g}" for v in metrics["lead_times"]))
    print("rel L2 direct  " + " ".join(f"{v:8.3g}" for v in metrics["rel_l2_direct"]))
    print("rel L2 rollout " + " ".join(f"{v:8.3g}" for v in metrics["rel_l2_rollout"]))
    if plot:
        for kind in ("direct", "rollout"):
            png = plots.error_per_step(metrics[f"rel_l2_{kind}"],
                                       run_dir / f"eval_{key}_{kind}_per_lead.png",
                                       title=f"{cfg.name}: test rel. L2 against lead time "
                                             f"({kind}), in snapshot intervals")
            print(f"wrote {png}")
    return metrics
