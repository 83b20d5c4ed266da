r"""PDEBench's HDF5 files (``format: pdebench``), read in place.

PDEBench (Takamoto et al. 2022) publishes three layouts; each maps to nopx fields with the
time axis first, ``(N, T, *spatial)``, as nopx stores trajectories:

* **Root arrays, one scalar equation** (1-D advection, Burgers, reaction–diffusion):
  ``tensor (N, T, X)`` plus ``x-coordinate (X,)`` and ``t-coordinate`` (``T`` or ``T + 1``
  values) → field ``u (T, X)``.
* **2-D Darcy**: ``nu (N, X, Y)`` (the coefficient) and ``tensor (N, 1, X, Y)`` (the
  steady solution), ``x-coordinate``, ``y-coordinate`` → fields ``nu (X, Y)`` and
  ``u (X, Y)`` (the time axis of length 1 dropped).
* **Root arrays, compressible flow** (1-/2-/3-D CFD): ``density``, ``pressure``, ``Vx``
  [``Vy``, ``Vz``] ``(N, T, *spatial)`` → fields of the same names.
* **One group per sample** (2-D diffusion–reaction, shallow water, 1-D diffusion–sorption):
  groups ``"0000"``, ``"0001"``, ... (in sorted order), each with ``data (T, *spatial, C)``
  and ``grid/x`` [``grid/y``, ``grid/z``], ``grid/t`` → field ``u (T, *spatial)`` for
  ``C = 1``, else ``u0 .. u{C-1}`` (channel ``c``).

Spatial axes are indexed ``x, y, z`` in that order (PDEBench's ``meshgrid(...,
indexing="ij")``); ``grid_origin``/``grid_spacing`` come from the coordinate arrays,
``times`` from ``t-coordinate`` (its first ``T`` values). Samples are read per block (root
arrays) or per group.
"""

from __future__ import annotations

import os
import pathlib

import h5py
import numpy as np

from nopx.datagen.formats.base import FieldSource, ForeignReader, layout_error, open_hdf5, uniform_axis

__all__ = ["AXES", "CFD_FIELDS", "open_pdebench"]

FORMAT = "pdebench"
CFD_FIELDS = ("density", "pressure", "Vx", "Vy", "Vz")
AXES = ("x", "y", "z")


def open_pdebench(path: str | os.PathLike) -> ForeignReader:
    """Open a PDEBench HDF5 file; see the module docstring for the layouts.

    Raises:
      UserError: the file is missing, or matches none of the layouts (naming the missing
        dataset or the mismatched shape).
    """
    path = pathlib.Path(path)
    file = open_hdf5(path, FORMAT)
    try:
        if "tensor" in file or any(name in file for name in CFD_FIELDS):
            return _root_arrays(path, file)
        return _sample_groups(path, file)
    except BaseException:
        file.close()
        raise


def _dataset(path: pathlib.Path, file: h5py.File | h5py.Group, name: str) -> h5py.Dataset:
    item = file.get(name)
    if not isinstance(item, h5py.Dataset):
        where = f"{file.name.rstrip('/')}/{name}".lstrip("/")
        raise layout_error(path, FORMAT, f"no dataset {where!r} (found: {', '.join(file) or 'nothing'})")
    return item


def _grid_attrs(path: pathlib.Path, spatial: tuple[int, ...], coordinates: list[h5py.Dataset],
                times: h5py.Dataset | None, steps: int | None) -> dict:
    """``grid_shape``, ``grid_origin``, ``grid_spacing`` (and ``times``); each coordinate array
    is checked against its axis of ``spatial``."""
    axes = [uniform_axis(coordinate[()]) for coordinate in coordinates]
    for axis, (coordinate, n) in enumerate(zip(coordinates, spatial, strict=True)):
        if coordinate.shape[-1] != n:
            raise layout_error(path, FORMAT, f"{coordinate.name.lstrip('/')} has shape {coordinate.shape} "
                                             f"but axis {AXES[axis]} of the data has {n} points")
    attrs = {"grid_shape": list(spatial), "grid_origin": [a[0] for a in axes],
             "grid_spacing": [a[1] for a in axes]}
    if times is not None and steps is not None:
        attrs["times"] = np.ravel(times[()])[:steps].tolist()
    return attrs


def _root_arrays(path: pathlib.Path, file: h5py.File) -> ForeignReader:
    if "tensor" in file:
        tensor = _dataset(path, file, "tensor")
        spatial_rank = tensor.ndim - 2
        if spatial_rank < 1:
            raise layout_error(path, FORMAT, f"'tensor' has shape {tensor.shape}, not (N, T, *spatial)")
        if "nu" in file:
            nu = _dataset(path, file, "nu")
            if tensor.shape[1] != 1 or nu.shape != (tensor.shape[0], *tensor.shape[2:]):
                raise layout_error(path, FORMAT, f"Darcy 'nu' {nu.shape} and 'tensor' {tensor.shape}: "
                                                 f"expected (N, X, Y) and (N, 1, X, Y)")
            sources = {"nu": _block_source(nu, nu.shape[1:], "nu"),
                       "u": FieldSource(tensor.shape[2:], tensor.dtype, f"tensor {tensor.shape}[:, 0]",
                                        lambda start, stop: tensor[start:stop, 0])}
            steps = None
        else:
            sources = {"u": _block_source(tensor, tensor.shape[1:], "tensor")}
            steps = tensor.shape[1]
        first = tensor
    else:
        present = [name for name in CFD_FIELDS if name in file]
        first = _dataset(path, file, present[0])
        spatial_rank = first.ndim - 2
        for name in present:
            if file[name].shape != first.shape:
                raise layout_error(path, FORMAT, f"{name!r} has shape {file[name].shape} but "
                                                 f"{present[0]!r} {first.shape}")
        sources = {name: _block_source(file[name], first.shape[1:], name) for name in present}
        steps = first.shape[1]
    coordinates = [_dataset(path, file, f"{axis}-coordinate") for axis in AXES[:spatial_rank]]
    attrs = _grid_attrs(path, first.shape[2:], coordinates, file.get("t-coordinate"), steps)
    return ForeignReader(path, FORMAT, sources, first.shape[0], {"layout": "root arrays", **attrs},
                         close=file.close)


def _block_source(data: h5py.Dataset, shape: tuple[int, ...], name: str) -> FieldSource:
    return FieldSource(tuple(shape), data.dtype, f"{name} {data.shape}", lambda start, stop: data[start:stop])


def _sample_groups(path: pathlib.Path, file: h5py.File) -> ForeignReader:
    names = sorted(name for name in file if isinstance(file[name], h5py.Group))
    if not names:
        raise layout_error(path, FORMAT, f"no 'tensor', no {'/'.join(CFD_FIELDS)} and no per-sample groups "
                                         f"with a 'data' dataset (found: {', '.join(file) or 'nothing'})")
    first = _dataset(path, file[names[0]], "data")
    if first.ndim < 3:
        raise layout_error(path, FORMAT, f"{first.name} has shape {first.shape}, not (T, *spatial, C)")
    for name in names[1:]:
        data = _dataset(path, file[name], "data")
        if data.shape != first.shape:
            raise layout_error(path, FORMAT, f"{data.name} has shape {data.shape} but {first.name} "
                               f"{first.shape}: every sample group must hold the same shape")
    steps, *spatial, channels = first.shape
    grid = file[names[0]].get("grid")
    if not isinstance(grid, h5py.Group):
        raise layout_error(path, FORMAT, f"no group '{names[0]}/grid' with the coordinates")
    coordinates = [_dataset(path, grid, axis) for axis in AXES[:len(spatial)]]
    attrs = _grid_attrs(path, tuple(spatial), coordinates, grid.get("t"), steps)

    def channel(c: int) -> FieldSource:
        def read(start: int, stop: int) -> np.ndarray:
            out = np.empty((stop - start, steps, *spatial), first.dtype)
            for row, name in enumerate(names[start:stop]):
                out[row] = file[name]["data"][..., c]
            return out

        return FieldSource((steps, *spatial), first.dtype, f"<sample>/data {first.shape}[..., {c}]", read)

    fields = ["u"] if channels == 1 else [f"u{c}" for c in range(channels)]
    sources = {field: channel(c) for c, field in enumerate(fields)}
    return ForeignReader(path, FORMAT, sources, len(names), {"layout": "one group per sample", **attrs},
                         close=file.close)
