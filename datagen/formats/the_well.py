r"""The Well's HDF5 files (``format: the-well``), read in place.

The Well (Ohana et al. 2024, ``docs/data_format.md``) stores one HDF5 file per set of
trajectories on a uniform grid:

* root attributes ``dataset_name``, ``n_spatial_dims``, ``n_trajectories``, ``grid_type``,
  ``simulation_parameters`` (names of further root attributes);
* ``dimensions/``: attribute ``spatial_dims`` (e.g. ``["x", "y"]``), one coordinate
  dataset per spatial dimension and ``time (T,)``;
* ``boundary_conditions/``: one group per boundary, attributes ``bc_type`` (``periodic``,
  ``wall``, ``open``) and ``associated_dims``;
* ``t0_fields/``, ``t1_fields/``, ``t2_fields/``: scalar, vector and rank-2 tensor fields
  (attribute ``field_names``), each ``(N, T, *spatial, D^order)`` with attributes
  ``sample_varying`` (no ``N`` axis when false), ``time_varying`` (no ``T`` axis when
  false) and ``dim_varying`` (a spatial axis of length 1 when false).

Mapping: a scalar field keeps its name; a vector field ``velocity`` becomes one field per
component, ``velocity_x``, ``velocity_y`` (The Well's own channel names), a tensor field
``stress`` the fields ``stress_xx``, ``stress_xy``, ... . A time-varying field is ``(T,
*spatial)`` per sample, a constant one ``(*spatial)``; an axis the field does not vary
along is repeated to the grid, and a field the same for every trajectory is repeated to
each sample. ``attrs``: ``pde`` (``dataset_name``), the grid from the coordinates,
``times``, ``boundary_conditions`` (``"x: periodic"`` per boundary group) and the
simulation parameters. Samples are read per block of trajectories.
"""

from __future__ import annotations

import itertools
import os
import pathlib
from typing import Any

import h5py
import numpy as np

from nopx.datagen.formats.base import FieldSource, ForeignReader, layout_error, open_hdf5, uniform_axis

__all__ = ["GROUPS", "open_the_well"]

FORMAT = "the-well"
GROUPS = ("dimensions", "boundary_conditions", "t0_fields", "t1_fields", "t2_fields")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _names(values: Any) -> list[str]:
    """An attribute holding a list of names (bytes or str, array or scalar) as strings."""
    return [_text(v) for v in np.atleast_1d(values)]


def _attr(path: pathlib.Path, item: h5py.Group | h5py.Dataset, name: str) -> Any:
    if name not in item.attrs:
        where = item.name if item.name != "/" else "the root"
        raise layout_error(path, FORMAT, f"no attribute {name!r} on {where}")
    return item.attrs[name]


def open_the_well(path: str | os.PathLike) -> ForeignReader:
    """Open a file of The Well; see the module docstring for the mapping.

    Raises:
      UserError: the file is missing, or lacks a group, attribute or shape of the published
        layout (naming it).
    """
    path = pathlib.Path(path)
    file = open_hdf5(path, FORMAT)
    try:
        return _layout(path, file)
    except BaseException:
        file.close()
        raise


def _layout(path: pathlib.Path, file: h5py.File) -> ForeignReader:
    for group in GROUPS:
        if not isinstance(file.get(group), h5py.Group):
            raise layout_error(path, FORMAT, f"no group {group!r} (found: {', '.join(file) or 'nothing'})")
    n_samples = int(_attr(path, file, "n_trajectories"))
    dimensions = file["dimensions"]
    axes = _names(_attr(path, dimensions, "spatial_dims"))
    if len(axes) != int(_attr(path, file, "n_spatial_dims")):
        raise layout_error(path, FORMAT, f"dimensions/spatial_dims {axes} does not have n_spatial_dims "
                                         f"= {int(file.attrs['n_spatial_dims'])} entries")
    for name in (*axes, "time"):
        if not isinstance(dimensions.get(name), h5py.Dataset):
            raise layout_error(path, FORMAT, f"no dataset 'dimensions/{name}'")
    spatial = tuple(dimensions[axis].shape[-1] for axis in axes)
    steps = dimensions["time"].shape[-1]
    sources: dict[str, FieldSource] = {}
    for order in range(3):
        group = file[f"t{order}_fields"]
        for name in _names(_attr(path, group, "field_names")):
            if not isinstance(group.get(name), h5py.Dataset):
                raise layout_error(path, FORMAT, f"t{order}_fields lists {name!r} but holds no such dataset")
            data = group[name]
            for component in itertools.product(range(len(axes)), repeat=order):
                suffix = "".join(axes[c] for c in component)
                field = f"{name}_{suffix}" if suffix else name
                sources[field] = _source(path, data, component, n_samples, steps, spatial)
    if not sources:
        raise layout_error(path, FORMAT, "t0_fields, t1_fields and t2_fields list no fields")
    bcs = [f"{','.join(_names(bc.attrs.get('associated_dims', [])))}: "
           f"{_text(bc.attrs.get('bc_type', '?')).lower()}" for bc in file["boundary_conditions"].values()]
    names = _names(file.attrs.get("simulation_parameters", []))
    parameters = {p: np.asarray(file.attrs[p]).tolist() for p in names if p in file.attrs}
    grid = [uniform_axis(np.ravel(dimensions[axis][()])[:n]) for axis, n in zip(axes, spatial, strict=True)]
    attrs = {"pde": _text(file.attrs.get("dataset_name", FORMAT)), "grid_shape": list(spatial),
             "grid_origin": [g[0] for g in grid], "grid_spacing": [g[1] for g in grid],
             "times": np.ravel(dimensions["time"][()])[:steps].tolist(),
             "boundary_conditions": bcs, "parameters": parameters,
             "grid_type": _text(file.attrs.get("grid_type", "cartesian"))}
    return ForeignReader(path, FORMAT, sources, n_samples, attrs, close=file.close)


def _source(path: pathlib.Path, data: h5py.Dataset, component: tuple[int, ...], n_samples: int,
            steps: int, spatial: tuple[int, ...]) -> FieldSource:
    """Component ``component`` of field ``data`` as ``(stop - start, [T,] *spatial)`` blocks."""
    per_sample = bool(data.attrs.get("sample_varying", True))
    per_time = bool(data.attrs.get("time_varying", True))
    varying = [bool(v) for v in np.atleast_1d(data.attrs.get("dim_varying", [True] * len(spatial)))]
    stored = tuple(n if v else 1 for n, v in zip(spatial, varying, strict=True))
    lead = ((n_samples,) if per_sample else ()) + ((steps,) if per_time else ())
    tail = (len(spatial),) * len(component)
    allowed = (lead + stored + tail, lead + tuple(n for n, v in zip(spatial, varying, strict=True) if v) + tail)
    if data.shape not in allowed:
        raise layout_error(path, FORMAT, f"{data.name} has shape {data.shape}, expected {allowed[0]} "
                                         f"(sample_varying {per_sample}, time_varying {per_time}, "
                                         f"dim_varying {varying})")
    time_axis = (steps,) if per_time else ()
    sample_shape = (*time_axis, *spatial)

    def read(start: int, stop: int) -> np.ndarray:
        if per_sample:
            block = data[(slice(start, stop), Ellipsis, *component)]
        else:  # one array for every trajectory
            block = data[(Ellipsis, *component)][None]
        block = block.reshape((block.shape[0], *time_axis, *stored))
        return np.array(np.broadcast_to(block, (stop - start, *sample_shape)))

    suffix = f"[..., {', '.join(map(str, component))}]" if component else ""
    return FieldSource(sample_shape, data.dtype, f"{data.name} {data.shape}{suffix}", read)
