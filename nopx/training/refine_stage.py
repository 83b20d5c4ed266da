"""The ``spectral_refine`` stage: Spectral-Refiner on the test trajectories of a trained SFNO.

The physics the residual needs (ν, the forcing, the time between stored slices) is read
from the dataset's own recipe, so the stage cannot refine against the wrong equation.
The result is reported as the test error before and after refinement (relative L2 to the
simulated truth, averaged over the refined trajectories) and the H^-1 residual norms.
"""

from __future__ import annotations

import pathlib

import numpy as np
import yaml
from flax import nnx

from nopx.config import Config, StageConfig
from nopx.errors import UserError
from nopx.training.data import Split


def nse_physics(path: pathlib.Path, grid: int, where: str) -> tuple[float, np.ndarray, float]:
    """``(nu, forcing (grid, grid), dt between slices)`` from a Navier–Stokes dataset's recipe."""
    from nopx.datagen import open_dataset
    from nopx.datagen.navier_stokes import forcing_field

    with open_dataset(path) as reader:
        recipe = yaml.safe_load(str(reader.attrs["recipe"]))
    if recipe.get("pde") != "navier_stokes":
        raise UserError(f"{where}: stage spectral_refine needs a Navier-Stokes dataset; "
                        f"{path} holds pde {recipe.get('pde')!r}")
    physics = recipe["navier_stokes"]
    forcing = forcing_field(physics.get("forcing", "fno"), grid,
                            physics.get("forcing_amplitude", 0.1),
                            physics.get("forcing_wavenumber", 1))
    return float(physics["nu"]), forcing, float(physics.get("record_every", 1.0))


def check_refine_stage(cfg: Config, stage: StageConfig, model: nnx.Module) -> str:
    """Refuse, before any training, a run whose ``spectral_refine`` stage cannot work;
    return the stage's name for messages."""
    from nopx.models import SFNO

    where = f"run {cfg.name}, stage {stage.name}"
    if not isinstance(model, SFNO) or cfg.data.time is None or cfg.data.time.mode != "direct":
        raise UserError(f"{where}: spectral_refine refines an sfno model on a trajectory task "
                        "(model.name: sfno, data.time.mode: direct)")
    if cfg.data.normalize:
        raise UserError(f"{where}: the NSE residual needs physical units; set "
                        "data.normalize: false for a run that ends with spectral_refine")
    return where


def spectral_refine(cfg: Config, stage: StageConfig, model: nnx.Module,
                    test: Split) -> dict[str, float]:
    """Refine the first ``stage.samples`` test trajectories; return before/after metrics.

    The residual is that of the physical equation, whose nonlinear term is not invariant
    under rescaling the vorticity, so the model must work in physical units
    (``data.normalize: false``).
    """
    from nopx.refine import refine

    where = check_refine_stage(cfg, stage, model)
    count = min(stage.samples, len(test))
    grid = test.x.shape[1] if test.x is not None else next(test.batches(1))[0].shape[1]
    nu, forcing, dt = nse_physics(test.path, grid, where)
    modes = stage.modes or (grid // 2, grid // 2, int(model.n_modes[-1]) + 1)
    before, after, residual_before, residual_after = [], [], [], []
    for x, y in test.batches(stage.batch, np.arange(count)):
        result = refine(model, x, out_steps=y.shape[-1], nu=nu, forcing=forcing, dt=dt,
                        modes=modes, iterations=stage.iterations, lr_weight=stage.lr_weight,
                        lr_bias=stage.lr_bias, alpha=stage.alpha,
                        time_derivative=stage.time_derivative, target=y)
        before.extend(np.asarray(result.rel_l2_before).tolist())
        after.extend(np.asarray(result.rel_l2_after).tolist())
        history = np.asarray(result.residual_history)
        residual_before.extend(history[0].tolist())
        residual_after.extend(history[-1].tolist())
    return {"refine/rel_l2_before": float(np.mean(before)),
            "refine/rel_l2_after": float(np.mean(after)),
            "refine/residual_before": float(np.mean(residual_before)),
            "refine/residual_after": float(np.mean(residual_after)),
            "refine/samples": count}
