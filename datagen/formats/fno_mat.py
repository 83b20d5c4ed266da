r"""The FNO paper's MATLAB files (``format: fno-mat``), read in place.

The FNO datasets (Li et al. 2021) are MATLAB ``.mat`` files, one array per variable with
the samples first *as MATLAB sees it*:

============================  ==============================  =========================================
file (example)                variables                        nopx fields
============================  ==============================  =========================================
``piececonst_r421_N1024_...``  ``coeff``, ``sol`` ``(N, s, s)``  ``a`` ← ``coeff``, ``u`` ← ``sol``
``burgers_data_R10.mat``      ``a``, ``u`` ``(N, s)``            ``a``, ``u``
``ns_V1e-3_N5000_T50.mat``    ``a`` ``(N, s, s)``,              ``a``; ``u`` ``(T, s, s)`` (time moved first);
                              ``u`` ``(N, s, s, T)``, ``t``      ``w`` ``(T + 1, s, s)`` = ``[a, u]``
============================  ==============================  =========================================

Other variables (``Kcoeff``, ...) are ignored. Navier–Stokes ``a`` is the vorticity at
``t = 0`` and ``u[..., j]`` at ``t[j]``; ``w`` joins them as nopx's own Navier–Stokes field
(``t = 0`` included, root attribute ``times``). Grids: Darcy is the ``s`` nodes of
``[0, 1]`` both ends included (FNO's ``linspace(0, 1, s)``); Burgers and Navier–Stokes are
the ``s`` nodes ``j / s`` of the periodic ``[0, 1)``.

**Storage.** MATLAB v7.3 files are HDF5 and store arrays column-major, so h5py sees
every axis reversed (``coeff`` on disk is ``(s, s, N)``); FNO's ``MatReader`` reverses all
axes after reading, and so does this reader, per block of samples (lazily: a sample is a
slice along the last on-disk axis). MATLAB v5 files (``scipy.io.loadmat``) have no random
access: a variable is loaded whole the first time it is read, and kept.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable

import h5py
import numpy as np
import scipy.io

from nopx.datagen.formats.base import FieldSource, ForeignReader, layout_error, open_hdf5
from nopx.errors import UserError

__all__ = ["MAT_V5_HEADER", "open_fno_mat"]

FORMAT = "fno-mat"
MAT_V5_HEADER = b"MATLAB 5.0 MAT-file"
# MATLAB classes (scipy.io.whosmat) as numpy dtypes, so that opening a v5 file loads nothing.
MAT_CLASSES = {"double": "float64", "single": "float32", "int32": "int32", "int64": "int64"}
EXPECTED = "expected 'coeff' and 'sol' (Darcy) or 'a' and 'u' (Burgers, Navier-Stokes)"


class _MatV73:
    """Variables of a v7.3 (HDF5) file in MATLAB's axis order, read per block of samples."""

    version = "MATLAB v7.3 (HDF5, stored transposed)"

    def __init__(self, path: pathlib.Path) -> None:
        self.file = open_hdf5(path, FORMAT)
        self.shapes = {name: tuple(reversed(item.shape)) for name, item in self.file.items()
                       if isinstance(item, h5py.Dataset) and not name.startswith("#")}

    def dtype(self, name: str) -> np.dtype:
        return self.file[name].dtype

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        return np.transpose(self.file[name][..., start:stop])

    def close(self) -> None:
        self.file.close()


class _MatV5:
    """Variables of a v5 file; each loaded whole on first read (v5 has no random access)."""

    version = "MATLAB v5"

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        try:
            listing = scipy.io.whosmat(path)
        except (ValueError, OSError) as err:
            raise layout_error(path, FORMAT, f"a MATLAB v5 header but unreadable ({err})") from None
        self.shapes = {name: tuple(shape) for name, shape, _ in listing}
        self._classes = {name: MAT_CLASSES.get(kind, "object") for name, _, kind in listing}
        self._loaded: dict[str, np.ndarray] = {}

    def _array(self, name: str) -> np.ndarray:
        if name not in self._loaded:
            self._loaded[name] = scipy.io.loadmat(self.path, variable_names=[name])[name]
        return self._loaded[name]

    def dtype(self, name: str) -> np.dtype:
        return np.dtype(self._classes[name])

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        return self._array(name)[start:stop]

    def close(self) -> None:
        self._loaded.clear()


def _is_v5(path: pathlib.Path) -> bool:
    with path.open("rb") as raw:
        return raw.read(len(MAT_V5_HEADER)) == MAT_V5_HEADER


def open_fno_mat(path: str | os.PathLike) -> ForeignReader:
    """Open an FNO ``.mat`` file (v5 or v7.3); see the module docstring for the mapping.

    Raises:
      UserError: the file is missing, or lacks the variables or shapes of every FNO layout
        (naming what is missing).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; check the path (data.path / nopx convert IN)")
    mat = _MatV5(path) if _is_v5(path) else _MatV73(path)
    try:
        return _layout(path, mat)
    except BaseException:
        mat.close()
        raise


def _field(mat: _MatV73 | _MatV5, name: str, transform: Callable[[np.ndarray], np.ndarray] | None = None,
           shape: tuple[int, ...] | None = None, origin: str | None = None) -> FieldSource:
    """Variable ``name`` as a field (optionally ``transform``-ed per block, to ``shape``)."""
    def read(start: int, stop: int) -> np.ndarray:
        block = mat.read(name, start, stop)
        return block if transform is None else transform(block)

    return FieldSource(shape=shape or mat.shapes[name][1:], dtype=mat.dtype(name),
                       origin=origin or f"{name} {mat.shapes[name]}", read=read)


def _layout(path: pathlib.Path, mat: _MatV73 | _MatV5) -> ForeignReader:
    shapes = mat.shapes
    found = ", ".join(f"{name} {shape}" for name, shape in shapes.items()) or "none"
    if {"coeff", "sol"} <= shapes.keys():
        names, pde = ("coeff", "sol"), "darcy"
    elif {"a", "u"} <= shapes.keys():
        names, pde = ("a", "u"), None
    else:
        raise layout_error(path, FORMAT, f"{EXPECTED}; variables found: {found}")
    a_shape, u_shape = shapes[names[0]], shapes[names[1]]
    for name in names:
        if len(shapes[name]) < 2 or not np.issubdtype(mat.dtype(name), np.floating):
            raise layout_error(path, FORMAT, f"variable {name!r} {shapes[name]} is not a floating-point "
                                             f"array of samples (N, ...)")
    if a_shape[0] != u_shape[0]:
        raise layout_error(path, FORMAT, f"{names[0]!r} holds {a_shape[0]} samples but {names[1]!r} "
                                         f"{u_shape[0]}")
    spatial = a_shape[1:]
    attrs: dict = {"version": mat.version, "grid_shape": list(spatial)}
    if pde == "darcy" or u_shape == a_shape:
        if u_shape != a_shape:
            raise layout_error(path, FORMAT, f"'coeff' {a_shape} and 'sol' {u_shape} differ in shape")
        pde = pde or ("burgers" if len(spatial) == 1 else FORMAT)
        sources = {"a": _field(mat, names[0]), "u": _field(mat, names[1])}
    elif u_shape[1:-1] == spatial:
        pde = "navier_stokes"
        steps = u_shape[-1]
        u = _field(mat, "u", lambda block: np.moveaxis(block, -1, 1), (steps, *spatial),
                   f"u {u_shape}, time axis moved first")
        sources = {
            "a": _field(mat, "a"),
            "u": u,
            "w": FieldSource(shape=(steps + 1, *spatial), dtype=u.dtype, origin="[a, u]: t = 0 included",
                             read=lambda start, stop: np.concatenate(
                                 [mat.read("a", start, stop)[:, None], u.read(start, stop)], axis=1)),
        }
        if "t" in shapes:
            attrs["times"] = [0.0, *np.ravel(mat.read("t", 0, shapes["t"][0])).tolist()]
    else:
        raise layout_error(path, FORMAT, f"'a' {a_shape} and 'u' {u_shape}: expected equal shapes "
                                         f"(Burgers) or 'u' = 'a' plus a last time axis (Navier-Stokes)")
    periodic = pde != "darcy"
    attrs.update(pde=pde, grid_origin=[0.0] * len(spatial),
                 grid_spacing=[1.0 / (n if periodic else n - 1) for n in spatial],
                 grid_extent=[1.0] * len(spatial))
    return ForeignReader(path, FORMAT, sources, a_shape[0], attrs, close=mat.close)
