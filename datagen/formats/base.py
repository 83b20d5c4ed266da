"""What a reader of another project's file layout hands to nopx: the :class:`DatasetReader` interface.

A foreign file is described by one :class:`FieldSource` per nopx field (its per-sample
shape, dtype, where in the file it comes from, and a function reading samples
``start:stop``); :class:`ForeignReader` turns those into the interface training, ``nopx
eval`` and ``nopx info`` use (``fields``, ``n_samples``, ``field_shape``, ``read``,
``read_range``, ``attrs``, ``close``). Samples are read on demand, a contiguous block at a
time: nothing is loaded whole unless the layout leaves no choice (MATLAB v5).

>>> source = FieldSource(shape=(3,), dtype=np.dtype("float32"), origin="demo",
...                      read=lambda start, stop: np.ones((stop - start, 3), np.float32))
>>> with ForeignReader("x.h5", "demo", {"u": source}, n_samples=4, attrs={}) as reader:
...     reader.fields, reader.read_range("u", 1, 3).shape, reader.attrs["complete"]
(('u',), (2, 3), True)
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import h5py
import numpy as np

from nopx.errors import UserError

__all__ = ["FieldSource", "ForeignReader", "layout_error", "open_hdf5", "uniform_axis"]

FORMAT_HINT = "pass the right --format / data.format (nopx, fno-mat, pdebench, the-well)"


@dataclasses.dataclass(frozen=True)
class FieldSource:
    """One nopx field of a foreign file.

    Attributes:
      shape: one sample, e.g. ``(n, n)`` or ``(T, n, n)``.
      dtype: the on-disk dtype.
      origin: where it comes from, in words (shown by ``nopx info``).
      read: ``(start, stop) -> (stop - start, *shape)`` array of samples ``start:stop``.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    origin: str
    read: Callable[[int, int], np.ndarray]


def layout_error(path: str | os.PathLike, fmt: str, problem: str) -> UserError:
    """The error for a file that does not have ``fmt``'s published layout, naming ``problem``."""
    return UserError(f"{path}: not a {fmt} file as published: {problem}; {FORMAT_HINT}")


def open_hdf5(path: str | os.PathLike, fmt: str) -> h5py.File:
    """Open ``path`` read-only; a missing, non-HDF5 or unreadable file is a UserError."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; check the path (data.path / nopx convert IN)")
    if not h5py.is_hdf5(path):
        raise layout_error(path, fmt, "not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise UserError(f"{path}: cannot open the file ({err}); it is damaged or in use") from None


def uniform_axis(coordinates: np.ndarray) -> tuple[float, float]:
    """``(first point, spacing)`` of a coordinate axis (the spacing of its first two points).

    >>> uniform_axis(np.array([0.25, 0.75]))
    (0.25, 0.5)
    """
    coordinates = np.asarray(coordinates, dtype=np.float64).ravel()
    spacing = float(coordinates[1] - coordinates[0]) if coordinates.size > 1 else 0.0
    return float(coordinates[0]), spacing


class ForeignReader:
    """A foreign dataset read in place, with the interface of :class:`~nopx.datagen.DatasetReader`.

    Attributes:
      path: the file.
      fields: the nopx field names, in order.
      n_samples: ``N``.
      attrs: ``format`` (the layout's name), ``complete`` (always true: a published file
        is whole), ``grid_shape`` and, where the file says, ``pde``, ``grid_origin``,
        ``grid_spacing``, ``times`` and per-format extras.
    """

    def __init__(self, path: str | os.PathLike, fmt: str, sources: Mapping[str, FieldSource],
                 n_samples: int, attrs: Mapping[str, Any],
                 close: Callable[[], None] = lambda: None) -> None:
        self.path = pathlib.Path(path)
        self._sources = dict(sources)
        self.fields: tuple[str, ...] = tuple(self._sources)
        self.n_samples = n_samples
        self.attrs: dict[str, Any] = {"format": fmt, "complete": True, **attrs}
        self._close = close

    @property
    def complete(self) -> bool:
        return True

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The grid shape (``attrs["grid_shape"]``), else one sample of the first field."""
        grid = self.attrs.get("grid_shape")
        return tuple(grid) if grid is not None else self.field_shape(self.fields[0])

    def _source(self, field: str) -> FieldSource:
        if field not in self._sources:
            raise UserError(f"{self.path}: no field {field!r} (fields: {', '.join(self.fields)})")
        return self._sources[field]

    def dtype(self, field: str) -> np.dtype:
        """On-disk dtype of ``field``."""
        return self._source(field).dtype

    def field_shape(self, field: str) -> tuple[int, ...]:
        """Shape of one sample of ``field``."""
        return self._source(field).shape

    def origin(self, field: str) -> str:
        """Where ``field`` comes from in the file, in words."""
        return self._source(field).origin

    def read(self, field: str, index: int) -> np.ndarray:
        """Sample ``index`` of ``field``, shape :meth:`field_shape`."""
        if not 0 <= index < self.n_samples:
            raise IndexError(f"sample {index} out of range [0, {self.n_samples})")
        return self.read_range(field, index, index + 1)[0]

    def read_range(self, field: str, start: int, stop: int) -> np.ndarray:
        """Samples ``start:stop`` of ``field``, shape ``(stop - start, *field_shape(field))``."""
        if not 0 <= start <= stop <= self.n_samples:
            raise IndexError(f"range {start}:{stop} out of [0, {self.n_samples}]")
        source = self._source(field)
        try:
            return source.read(start, stop)
        except OSError as err:
            raise UserError(f"{self.path}: samples {start}..{stop - 1} of field {field!r} "
                            f"({source.origin}) cannot be read ({err}); the file is damaged") from None

    def close(self) -> None:
        self._close()

    def __enter__(self) -> ForeignReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
