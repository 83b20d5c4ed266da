"""``nopx info FILE``: a human-readable summary of a dataset: a nopx file (complete or not,
verified) or a foreign one read in place (its format, and where each field comes from)."""

from __future__ import annotations

import os

import numpy as np

from nopx.datagen.dataset import open_dataset
from nopx.datagen.formats import ForeignReader, resolve_format

__all__ = ["info"]


def _stats(values: np.ndarray, spec: str) -> str:
    if values.size == 0:
        return "n/a"
    return f"max {values.max():{spec}}, median {np.median(values):{spec}}"


def _foreign_info(path: str | os.PathLike, data: ForeignReader) -> str:
    """Format, fields (with their origin in the file), grid and the format's own attributes."""
    attrs = dict(data.attrs)
    fields = [f"    {name:<10} {(data.n_samples, *data.field_shape(name))}  {data.dtype(name)}  "
              f"<- {data.origin(name)}" for name in data.fields]
    shown = ("format", "complete", "pde", "grid_shape", "grid_origin", "grid_spacing", "times")
    extras = [f"  {key}: {value}" for key, value in attrs.items() if key not in shown]
    times = attrs.get("times")
    lines = [
        f"{path}",
        f"  format {attrs['format']} (read in place; `nopx convert` writes a nopx file), "
        f"pde {attrs.get('pde', '?')}, {data.n_samples} samples",
        f"  grid {'x'.join(map(str, data.spatial_shape))}, spacing {attrs.get('grid_spacing', '?')}, "
        f"first point {attrs.get('grid_origin', '?')}",
        *([f"  times {len(times)}: {times[0]:g} .. {times[-1]:g}"] if times else []),
        "  fields:",
        *fields,
        *extras,
    ]
    return "\n".join(lines)


def info(path: str | os.PathLike, format: str = "auto") -> str:
    """Fields, shapes, dtypes, provenance, completeness, solver statistics, content hashes and recipe.

    Reads every written sample of a nopx dataset: its checksum and finite values are
    verified, and each field's SHA-256 (over its samples in index order, as stored) is
    shown, so two datasets can be compared by their hashes. A foreign file (``format``, or
    detected) is described without reading its samples.

    Raises:
      UserError: when ``path`` is not a readable dataset or a sample is damaged.
    """
    if resolve_format(path, format) != "nopx":
        with open_dataset(path, format=format) as foreign:
            return _foreign_info(path, foreign)
    with open_dataset(path, require_complete=False, format="nopx") as data:
        attrs = data.attrs
        hashes = data.verify()
        done = data.meta("done")
        residual, iterations, matvecs, seconds, retried = (
            data.meta(name)[done] for name in ("residual", "iterations", "matvecs", "seconds", "retried"))
        n_params = data.meta("params").shape[1]
        fields = [f"    {name:<6} {(data.n_samples, *data.field_shape(name))}  {data.dtype(name)}"
                  for name in data.fields]
        complete = data.complete and bool(done.all())
    shard = f", shard {attrs['shard_index']} of {attrs['shard_count']}" if "shard_count" in attrs else ""
    status = "complete" if complete else "INCOMPLETE (resume with `nopx datagen --resume`)"
    grid = "x".join(map(str, attrs.get("grid_shape", data.spatial_shape)))
    solve = "x".join(map(str, attrs.get("solve_shape", "?")))
    scope = "" if complete else f" (of the {int(done.sum())} samples written)"
    lines = [
        f"{path}",
        f"  pde {attrs.get('pde', '?')}, seed {attrs.get('seed', '?')}, first index "
        f"{attrs.get('first_index', 0)}{shard}",
        f"  format nopx, {status}: {int(done.sum())}/{done.size} samples done",
        f"  created {attrs.get('created', '?')} by nopx {attrs.get('nopx_version', '?')} "
        f"(format {attrs['format_version']})",
        f"  grid {grid} stored (solved on {solve}), spacing {attrs.get('grid_spacing', '?')}, "
        f"first point {attrs.get('grid_origin', '?')}, extent {attrs.get('grid_extent', '?')}",
        "  fields:",
        *fields,
        f"    params {(done.size, n_params)}",
        f"  sha256{scope}:",
        *(f"    {name:<6} {digest}" for name, digest in hashes.items()),
        f"  residual   {_stats(residual, '.2e')}",
        f"  iterations {_stats(iterations, 'g')}; matvecs {_stats(matvecs, 'g')}; "
        f"retried {int(retried.sum())} (engine missed rtol, redone by a direct solve)",
        f"  seconds    {_stats(seconds, '.4f')}, total {seconds.sum():.1f}",
        "  recipe:",
        *(f"    {line}" for line in attrs.get("recipe", "(none stored)").splitlines()),
    ]
    return "\n".join(lines)
