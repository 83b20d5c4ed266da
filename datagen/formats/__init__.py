"""Datasets in other projects' layouts, read in place: FNO ``.mat``, PDEBench and The Well.

``nopx.datagen.open_dataset(path, format=...)`` dispatches here for every format but
``nopx``; the readers have the interface of :class:`~nopx.datagen.DatasetReader` that
training, ``nopx eval`` and ``nopx info`` use, so no conversion is needed
(``nopx convert`` writes a nopx file for those who want one). ``format: auto`` is decided
by :func:`detect_format`. Each module's docstring documents its field and axis mapping.

>>> FORMATS
('nopx', 'fno-mat', 'pdebench', 'the-well')
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable

import h5py

from nopx.datagen.formats.base import FieldSource, ForeignReader
from nopx.datagen.formats.fno_mat import MAT_V5_HEADER, open_fno_mat
from nopx.datagen.formats.pdebench import open_pdebench
from nopx.datagen.formats.the_well import open_the_well
from nopx.errors import UserError

__all__ = ["FORMATS", "FieldSource", "ForeignReader", "detect_format", "open_foreign", "resolve_format"]

FORMATS = ("nopx", "fno-mat", "pdebench", "the-well")
READERS: dict[str, Callable[[str | os.PathLike], ForeignReader]] = {
    "fno-mat": open_fno_mat,
    "pdebench": open_pdebench,
    "the-well": open_the_well,
}
MAT_V73_HEADER = b"MATLAB 7.3 MAT-file"


def detect_format(path: str | os.PathLike) -> str:
    """The layout of the file at ``path``, from its header and top-level names.

    ``fno-mat``: a MATLAB header (v5, or the v7.3 HDF5 user block) or a ``.mat`` name;
    ``the-well``: a ``t0_fields`` group; ``pdebench``: an ``x-coordinate`` dataset or a
    first group holding ``data``; ``nopx`` otherwise, including files that are missing,
    unreadable or carry a ``format`` attribute (the nopx reader names what is wrong).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        return "nopx"
    with path.open("rb") as raw:
        head = raw.read(len(MAT_V73_HEADER))
    if head.startswith(MAT_V5_HEADER):
        return "fno-mat"
    if not h5py.is_hdf5(path):
        return "nopx"
    try:
        file = h5py.File(path, "r")
    except OSError:
        return "nopx"
    with file:
        if "format" in file.attrs:
            return "nopx"
        if head == MAT_V73_HEADER or path.suffix.lower() == ".mat":
            return "fno-mat"
        if "t0_fields" in file:
            return "the-well"
        first = next(iter(file.values()), None)
        if "x-coordinate" in file or (isinstance(first, h5py.Group) and "data" in first):
            return "pdebench"
    return "nopx"


def resolve_format(path: str | os.PathLike, fmt: str = "auto") -> str:
    """``fmt``, or for ``auto`` the detected format; an unknown name is a UserError."""
    if fmt == "auto":
        return detect_format(path)
    if fmt not in FORMATS:
        raise UserError(f"unknown dataset format {fmt!r}; use auto or one of {', '.join(FORMATS)}")
    return fmt


def open_foreign(path: str | os.PathLike, fmt: str) -> ForeignReader:
    """Open ``path`` with the reader of foreign format ``fmt`` (not ``nopx``)."""
    return READERS[fmt](path)
