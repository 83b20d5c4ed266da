"""``nopx info FILE``: a human-readable summary of a nopx dataset, complete or not."""

from __future__ import annotations

import os

import numpy as np

from nopx.datagen.dataset import open_dataset

__all__ = ["info"]


def _stats(values: np.ndarray, spec: str) -> str:
    if values.size == 0:
        return "n/a"
    return f"max {values.max():{spec}}, median {np.median(values):{spec}}"


def info(path: str | os.PathLike) -> str:
    """Fields, shapes, dtypes, provenance, completeness, solver statistics and the recipe of ``path``.

    Raises:
      UserError: when ``path`` is not a readable nopx dataset.
    """
    with open_dataset(path, require_complete=False) as data:
        attrs = data.attrs
        done = data.meta("done")
        residual, iterations, matvecs, seconds, retried = (
            data.meta(name)[done] for name in ("residual", "iterations", "matvecs", "seconds", "retried"))
        n_params = data.meta("params").shape[1]
        fields = [f"    {name:<6} {(data.n_samples, *data.field_shape(name))}  {data.dtype(name)}"
                  for name in data.fields]
    shard = f", shard {attrs['shard_index']} of {attrs['shard_count']}" if "shard_count" in attrs else ""
    status = "complete" if attrs.get("complete") else "INCOMPLETE (resume with `nopx datagen --resume`)"
    grid = "x".join(map(str, attrs["grid_shape"]))
    solve = "x".join(map(str, attrs["solve_shape"]))
    lines = [
        f"{path}",
        f"  pde {attrs['pde']}, seed {attrs['seed']}, first index {attrs['first_index']}{shard}",
        f"  {status}: {int(done.sum())}/{done.size} samples done",
        f"  created {attrs['created']} by nopx {attrs['nopx_version']} (format {attrs['format_version']})",
        f"  grid {grid} stored (solved on {solve}), spacing {attrs['grid_spacing']}, "
        f"first point {attrs['grid_origin']}, extent {attrs['grid_extent']}",
        "  fields:",
        *fields,
        f"    params {(done.size, n_params)}",
        f"  residual   {_stats(residual, '.2e')}",
        f"  iterations {_stats(iterations, 'g')}; matvecs {_stats(matvecs, 'g')}; "
        f"retried {int(retried.sum())} (engine missed rtol, redone by a direct solve)",
        f"  seconds    {_stats(seconds, '.4f')}, total {seconds.sum():.1f}",
        "  recipe:",
        *(f"    {line}" for line in attrs["recipe"].splitlines()),
    ]
    return "\n".join(lines)
