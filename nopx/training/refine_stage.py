"""Spectral-Refiner on a trained run: the ``spectral_refine`` stage and ``nopx refine``.

Both refine trajectories of a trained model (:mod:`nopx.refine`) batch by batch through
:func:`refine_batches`. The physics the residual needs (ν, the forcing, the time between
stored slices) is read from the dataset's own recipe, so neither can refine against the
wrong equation; ``nopx refine`` also takes it from flags for files without one.

* The stage refines the first ``samples`` test trajectories after training and reports the
  test error before and after refinement (relative L2 to the simulated truth, averaged
  over the refined trajectories) and the H^-1 residual norms.
* The command (:func:`refine_file`) refines the last ``samples`` trajectories of any
  dataset — no ground truth needed — and writes them as a nopx dataset.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import h5py
import numpy as np
import yaml
from flax import nnx

from nopx.config import Config, StageConfig
from nopx.errors import UserError
from nopx.training.data import Normalizer, Split

#: The task each refinable model family runs in (``data.time.mode``).
TASKS = {"SFNO": "direct", "FNO": "spacetime"}


class Physics(NamedTuple):
    """What the NSE residual needs: ``nu``, the ``forcing`` field on the grid and its
    ``kind`` (:func:`~nopx.datagen.navier_stokes.forcing_field`), and ``dt`` between slices."""

    nu: float
    forcing: np.ndarray
    kind: str
    dt: float


def nse_physics(path: pathlib.Path, grid: int, where: str, *, nu: float | None = None,
                forcing: str | None = None, dt: float | None = None) -> Physics:
    """The physics of a Navier–Stokes dataset on a ``grid × grid`` torus.

    From the file's recipe (``navier_stokes.nu``, ``forcing``, ``forcing_amplitude``,
    ``forcing_wavenumber``, ``record_every``); ``nu``, ``forcing`` (a kind: ``fno``,
    ``kolmogorov``, ``none``) and ``dt`` override it, and are required for a file without a
    Navier–Stokes recipe.
    """
    from nopx.datagen import open_dataset
    from nopx.datagen.navier_stokes import NavierStokesConfig, forcing_field

    with open_dataset(path) as reader:
        recipe = yaml.safe_load(str(reader.attrs.get("recipe", ""))) or {}
    if recipe.get("pde") == "navier_stokes":
        recipe_physics = recipe.get("navier_stokes") or {}
    else:
        missing = [f"--{key}" for key, value in (("nu", nu), ("forcing", forcing), ("dt", dt))
                   if value is None]
        if missing:
            raise UserError(f"{where}: the NSE residual needs ν, the forcing and the time "
                            f"between slices; {path} holds pde {recipe.get('pde')!r}, not a "
                            f"Navier-Stokes recipe: pass {' '.join(missing)}")
        recipe_physics = {}
    try:
        physics = NavierStokesConfig(**{key: value for key, value in recipe_physics.items()
                                        if key in NavierStokesConfig.__dataclass_fields__})
        kind = forcing or physics.forcing
        field = forcing_field(kind, grid, physics.forcing_amplitude, physics.forcing_wavenumber)
    except (TypeError, ValueError) as err:
        raise UserError(f"{where}: {path}: {err}") from None
    return Physics(float(physics.nu if nu is None else nu), field, kind,
                   float(physics.record_every if dt is None else dt))


def check_refinable(cfg: Config, model: nnx.Module, time_derivative: str, where: str) -> None:
    """Refuse a run whose model or task Spectral-Refiner cannot refine."""
    from nopx.models import FNO, SFNO
    from nopx.refine import refinable

    reason = refinable(model)
    if reason is not None:
        raise UserError(f"{where}: {reason}")
    family = "SFNO" if isinstance(model, SFNO) else "FNO"
    mode = None if cfg.data.time is None else cfg.data.time.mode
    if mode != TASKS[family]:
        raise UserError(f"{where}: Spectral-Refiner refines an sfno on a trajectory task with "
                        "data.time.mode: direct, or an fno/tfno with data.time.mode: spacetime; "
                        f"this run is a {type(model).__name__} with data.time.mode {mode}")
    if time_derivative == "spectral" and isinstance(model, FNO):
        raise UserError(f"{where}: time_derivative 'spectral' needs the temporal series of an "
                        f"sfno output; a {type(model).__name__} predicts slices only: use 'fd'")


def check_refine_stage(cfg: Config, stage: StageConfig, model: nnx.Module) -> str:
    """Refuse, before any training, a run whose ``spectral_refine`` stage cannot work;
    return the stage's name for messages."""
    where = f"run {cfg.name}, stage {stage.name}"
    check_refinable(cfg, model, stage.time_derivative, where)
    if cfg.data.normalize:
        raise UserError(f"{where}: the NSE residual needs physical units; set "
                        "data.normalize: false for a run that ends with spectral_refine")
    return where


def refine_batches(model: nnx.Module, batches: Iterable[tuple[np.ndarray, np.ndarray | None]],
                   settings: StageConfig, *, out_steps: int, physics: Physics,
                   normalizers: tuple[Normalizer, Normalizer] | None = None,
                   ) -> Iterator[tuple[np.ndarray, Any]]:
    """:func:`nopx.refine.refine` on each ``(x, y or None)`` batch: ``(x, its``
    :class:`~nopx.refine.RefineResult` ``)`` in turn. ``settings`` holds the iterations,
    modes, learning rates, ``alpha`` and time derivative."""
    from nopx.refine import refine

    for x, y in batches:
        yield x, refine(model, x, out_steps=out_steps, nu=physics.nu, forcing=physics.forcing,
                        dt=physics.dt, modes=settings.modes, iterations=settings.iterations,
                        lr_weight=settings.lr_weight, lr_bias=settings.lr_bias,
                        alpha=settings.alpha, time_derivative=settings.time_derivative,
                        anchor=settings.anchor, target=y, normalizers=normalizers)


def spectral_refine(cfg: Config, stage: StageConfig, model: nnx.Module,
                    test: Split) -> dict[str, float]:
    """Refine the first ``stage.samples`` test trajectories; return before/after metrics.

    The residual is that of the physical equation, whose nonlinear term is not invariant
    under rescaling the vorticity, so the model must work in physical units
    (``data.normalize: false``).
    """
    where = check_refine_stage(cfg, stage, model)
    count = min(stage.samples, len(test))
    grid = test.x.shape[1] if test.x is not None else next(test.batches(1))[0].shape[1]
    results = [result for _, result in refine_batches(
        model, test.batches(stage.batch, np.arange(count)), stage, out_steps=test.output_steps,
        physics=nse_physics(test.path, grid, where))]
    before, after, residual_before, residual_after = (
        np.concatenate([getattr(r, name) for r in results])
        for name in ("rel_l2_before", "rel_l2_after", "residual_before", "residual_after"))
    return {"refine/rel_l2_before": float(np.mean(before)),
            "refine/rel_l2_after": float(np.mean(after)),
            "refine/residual_before": float(np.mean(residual_before)),
            "refine/residual_after": float(np.mean(residual_after)),
            "refine/samples": count}


def refine_file(run: str | pathlib.Path, data: str | pathlib.Path, out: str | pathlib.Path, *,
                samples: int | None = None, batch: int = 4, iterations: int = 50,
                modes: Sequence[int] | None = None, lr_weight: float = 1e-4, lr_bias: float = 0.2,
                alpha: float = 10 ** -1.5, time_derivative: str | None = None,
                anchor: bool = False, subsample: int = 1, nu: float | None = None,
                forcing: str | None = None, dt: float | None = None) -> dict[str, Any]:
    """``nopx refine``: refine the last ``samples`` trajectories of ``data`` (default: all)
    with ``run``'s model, ``batch`` at a time, and write them to ``out``; return a summary:
    the per-trajectory scalars as lists and a ``report`` of their distributions.

    ``iterations``, ``modes``, ``lr_weight``, ``lr_bias``, ``alpha``, ``time_derivative``
    and ``anchor`` are :class:`~nopx.config.StageConfig`'s (``time_derivative`` default:
    ``"spectral"`` for an sfno, ``"fd"`` for an fno/tfno; ``anchor`` needs ``"fd"``).

    The run's window (``data.time.start``, ``input``; its ``output_steps`` predicted
    slices) is read from ``data``'s trajectory field, every ``subsample``-th point per
    spatial axis (the file's own grid by default: refining finer than the training grid is
    the paper's setting). Where the file holds the slices after the input window, they are
    the truth for the errors before/after. ``out`` is a nopx dataset (``nopx info`` reads
    it) with, per trajectory:

    * fields ``<field>``: the input slices then the refined prediction ``(T_in + T_out, X,
      Y)``, and ``<field>_initial``: the input slices then the model's own prediction;
    * ``meta/params``: the trajectory's index in ``data``; ``meta/iterations``: the best
      iterate; ``meta/residual``: η after; ``meta/seconds``: refinement time;
    * group ``refine/``, one entry per trajectory: ``residual_before``, ``residual_after``
      (the H^-1 residual norms η), ``residual_history`` ``(N, iterations + 1)`` and, with a
      truth, ``rel_l2_before``, ``rel_l2_after`` (relative L2 errors).

    Its ``recipe`` attribute names the run, the data file and every setting, and carries the
    Navier–Stokes physics used, so the file can be refined or checked again.
    """
    from nopx.datagen import open_dataset
    from nopx.datagen.dataset import DatasetWriter
    from nopx.training.evaluate import load_run

    run, data, out = pathlib.Path(run), pathlib.Path(data), pathlib.Path(out)
    where = f"nopx refine --run {run}"
    cfg, steps, params, meta = load_run(run)
    model = nnx.merge(steps.graphdef, params, steps.rest)
    if time_derivative is None:
        time_derivative = "spectral" if type(model).__name__ == "SFNO" else "fd"
    try:
        settings = StageConfig(kind="spectral_refine", iterations=iterations,
                               modes=None if modes is None else tuple(modes),
                               lr_weight=lr_weight, lr_bias=lr_bias, alpha=alpha,
                               time_derivative=time_derivative, anchor=anchor, batch=batch)
    except ValueError as err:
        raise UserError(f"{where}: {err}") from None
    check_refinable(cfg, model, settings.time_derivative, where)
    if out.exists():
        raise UserError(f"{out}: already exists; choose another --out or delete it")
    field, window = cfg.data.inputs[0], cfg.data.time
    out_steps = int(meta["output_steps"])
    with open_dataset(data) as reader:
        if field not in reader.fields:
            raise UserError(f"{data}: no field {field!r} (fields: {', '.join(reader.fields)}), "
                            f"the trajectory field run {cfg.name} learned")
        shape, total, attrs = reader.field_shape(field), reader.n_samples, dict(reader.attrs)
    first_output = window.start + window.input
    if len(shape) != 3 or shape[0] < first_output or shape[1] % subsample or shape[2] % subsample:
        raise UserError(f"{data}: field {field!r} has shape {shape} per sample; refining needs "
                        f"(T, X, Y) trajectories with at least {first_output} slices (run "
                        f"{cfg.name}'s input window) and X, Y divisible by --subsample {subsample}")
    count = total if samples is None else samples
    if not 0 < count <= total:
        raise UserError(f"{data}: holds {total} trajectories; --samples {samples} must be "
                        f"1..{total}")
    has_truth = shape[0] >= first_output + out_steps
    grid = (shape[1] // subsample, shape[2] // subsample)
    physics = nse_physics(data, grid[0], where, nu=nu, forcing=forcing, dt=dt)
    first = total - count
    slices = window.input + out_steps
    fields = {field: (slices, *grid), f"{field}_initial": (slices, *grid)}
    scalars = ["residual_before", "residual_after", *(["rel_l2_before", "rel_l2_after"]
                                                      if has_truth else [])]
    recipe = {"pde": "navier_stokes",
              "refine": {"run": str(run.resolve()), "data": str(data.resolve()),
                         "samples": count, "first_sample": first, "subsample": subsample,
                         "field": field, "input_slices": window.input, "output_steps": out_steps,
                         **{key: getattr(settings, key) for key in (
                             "iterations", "lr_weight", "lr_bias", "alpha", "time_derivative",
                             "anchor")},
                         "modes": None if settings.modes is None else list(settings.modes)},
              "navier_stokes": {"nu": physics.nu, "forcing": physics.kind,
                                "record_every": physics.dt}}
    extent = np.asarray(attrs.get("grid_extent", [1.0, 1.0]), float)
    t0 = float(np.asarray(attrs.get("times", [0.0] * (window.start + 1)))[window.start])
    file_attrs = {"pde": "navier_stokes", "recipe": yaml.safe_dump(recipe, sort_keys=False),
                  "seed": int(attrs.get("seed", 0)), "first_index": 0,
                  "grid_shape": list(grid), "grid_extent": extent.tolist(),
                  "grid_origin": list(attrs.get("grid_origin", [0.0, 0.0])),
                  "grid_spacing": (extent / np.asarray(grid)).tolist(),
                  "solve_shape": list(attrs.get("solve_shape", grid)),
                  "times": (t0 + physics.dt * np.arange(slices)).tolist()}
    normalizers = (steps.x_norm, steps.y_norm) if cfg.data.normalize else None
    batches = _read_windows(data, field, range(first, total), settings.batch, subsample,
                            window.start, window.input, out_steps if has_truth else 0)
    history: list[list[float]] = []
    summary: dict[str, list[float]] = {name: [] for name in scalars}
    with DatasetWriter.create(out, n_samples=count, fields=fields, n_params=1, dtype="float32",
                              attrs=file_attrs) as writer:
        done, start = 0, time.perf_counter()
        for x, result in refine_batches(model, batches, settings, out_steps=out_steps,
                                        physics=physics, normalizers=normalizers):
            inputs = np.moveaxis(x, -1, 1)
            predictions = (result.prediction, result.initial_prediction)
            rows = np.arange(done, done + len(x))
            seconds = (time.perf_counter() - start) / len(x)
            writer.write(rows, {name: np.concatenate([inputs, np.moveaxis(w, -1, 1)], 1)
                                for name, w in zip(fields, predictions)},
                         (first + rows)[:, None], iterations=result.best_iteration,
                         matvecs=[settings.iterations] * len(x), residual=result.residual_after,
                         seconds=[seconds] * len(x))
            for name, values in summary.items():
                values.extend(np.asarray(getattr(result, name)).tolist())
            history.extend(result.residual_history.T.tolist())
            done, start = done + len(x), time.perf_counter()
        writer.finish(rtol=np.inf)      # meta/residual is η, not a solver tolerance
    # The format's fields are grid-shaped: the per-trajectory numbers get a group of their own.
    with h5py.File(out, "r+") as file:
        group = file.create_group("refine")
        for name, values in {**summary, "residual_history": history}.items():
            group.create_dataset(name, data=np.asarray(values, np.float64))
    return {"out": str(out), "samples": count, "grid": grid, **summary,
            "report": distribution_report(summary)}


def distribution_report(summary: dict[str, list[float]]) -> str:
    """min / median / mean / max over the trajectories of each before/after scalar, and of
    the after/before ratios.

    >>> print(distribution_report({"residual_before": [2.0, 4.0], "residual_after": [1.0, 1.0]}))
                       min        median     mean       max
    residual_before    2          3          3          4
    residual_after     1          1          1          1
    residual ratio     0.25       0.375      0.375      0.5
    """
    rows = {name: np.asarray(values, float) for name, values in summary.items()}
    for quantity in ("residual", "rel_l2"):
        if f"{quantity}_before" in rows:
            rows[f"{quantity} ratio"] = rows[f"{quantity}_after"] / rows[f"{quantity}_before"]
    lines = [f"{'':<16}" + "".join(f"   {head:<8}" for head in ("min", "median", "mean", "max"))]
    for name, values in rows.items():
        stats = (values.min(), np.median(values), values.mean(), values.max())
        lines.append(f"{name:<16}" + "".join(f"   {v:<8.3g}" for v in stats))
    return "\n".join(line.rstrip() for line in lines)


def _read_windows(path: pathlib.Path, field: str, indices: range, batch: int, subsample: int,
                  start: int, inputs: int, outputs: int,
                  ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """``(x (b, X, Y, inputs), y (b, X, Y, outputs) or None)`` batches of trajectories
    ``indices``, one contiguous read per batch (the whole file is never loaded)."""
    from nopx.datagen import open_dataset

    with open_dataset(path) as reader:
        for low in range(indices.start, indices.stop, batch):
            high = min(low + batch, indices.stop)
            w = reader.read_range(field, low, high)[:, :, ::subsample, ::subsample]
            if not np.isfinite(w).all():
                raise UserError(f"{path}: field {field!r} holds NaN or Inf in samples "
                                f"{low}..{high - 1}; regenerate them")
            x = np.moveaxis(w[:, start:start + inputs], 1, -1)
            y = (np.moveaxis(w[:, start + inputs:start + inputs + outputs], 1, -1)
                 if outputs else None)
            yield x, y
