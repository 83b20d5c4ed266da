"""The nopx HDF5 dataset format: a crash-safe writer and a checking reader.

One file per dataset. Root attributes: ``format="nopx-dataset"``, ``format_version``,
``pde``, ``recipe`` (resolved YAML), ``seed``, ``first_index``, ``nopx_version``,
``created``, ``fields`` (names in order), the grid (``grid_shape``, ``grid_extent``,
``grid_origin``, ``grid_spacing``, ``solve_shape``) and ``complete``. One dataset per
field, ``(N, *spatial)``, chunked one sample per chunk; group ``meta/`` holds per-sample
``params (N, P)``, ``done``, ``order``, ``iterations``, ``matvecs``, ``residual``,
``seconds`` and ``retried``. ``data/README.md`` documents every entry.

Crash safety: every dataset's storage is allocated when the file is created (and the file
is created under a temporary name, then renamed), so later writes change raw data only,
never HDF5 metadata; a killed writer cannot corrupt the file's structure. A sample's data
is written and flushed before its ``done`` flag is set and flushed.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "demo.h5"
>>> with DatasetWriter.create(path, n_samples=2, fields={"u": (3, 3)}, n_params=1,
...                           dtype="float32", attrs={"pde": "demo"}) as writer:
...     writer.write([0, 1], {"u": np.ones((2, 3, 3))}, np.zeros((2, 1)),
...                  iterations=[0, 0], matvecs=[0, 0], residual=[0.0, 0.0], seconds=[1e-3, 1e-3])
...     writer.finish(rtol=1e-8)
>>> with open_dataset(path) as data:
...     data.fields, data.n_samples, data.spatial_shape, data.read("u", 1).sum()
(('u',), 2, (3, 3), np.float32(9.0))
"""

from __future__ import annotations

import datetime
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

import nopx
from nopx.errors import UserError

__all__ = ["DatasetReader", "DatasetWriter", "open_dataset", "FORMAT", "FORMAT_VERSION", "META_FIELDS"]

FORMAT = "nopx-dataset"
FORMAT_VERSION = 1
META_FIELDS = ("params", "done", "order", "iterations", "matvecs", "residual", "seconds", "retried")


def _open_checked(path: str | os.PathLike, mode: str) -> h5py.File:
    """Open a nopx dataset; anything else (missing, not HDF5, foreign, too new) is a UserError."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such dataset file; create it with "
                        f"`nopx datagen --config RECIPE --out {path}`")
    if not h5py.is_hdf5(path):
        raise UserError(f"{path}: not an HDF5 file; point to a dataset written by `nopx datagen`")
    try:
        file = h5py.File(path, mode)
    except OSError as err:
        raise UserError(f"{path}: cannot open the dataset ({err}); is another process writing it?") from None
    if file.attrs.get("format") != FORMAT:
        file.close()
        raise UserError(f"{path}: an HDF5 file but not a nopx dataset (no format='{FORMAT}' "
                        f"attribute); make one with `nopx datagen --config RECIPE --out {path}`")
    version = int(file.attrs.get("format_version", 0))
    if version > FORMAT_VERSION:
        file.close()
        raise UserError(f"{path}: written by a newer nopx (format_version {version}; this nopx "
                        f"{nopx.__version__} reads up to {FORMAT_VERSION}); upgrade nopx to read it")
    return file


def _plain(value: Any) -> Any:
    """An HDF5 attribute value as plain Python (numpy scalars and arrays become int/float/list)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_attrs(file: h5py.File) -> dict[str, Any]:
    return {key: _plain(value) for key, value in file.attrs.items()}


def _incomplete_message(path: pathlib.Path, done: int, total: int) -> str:
    return (f"{path}: incomplete dataset ({done} of {total} samples done); finish it with "
            f"`nopx datagen --config RECIPE --out {path} --resume` using the recipe that "
            f"made it (`nopx info {path}` prints it), or delete the file")


class DatasetReader:
    """Read access to a nopx dataset; use :func:`open_dataset`.

    Attributes:
      path: the file.
      fields: the field names, in the order the family stores them.
      n_samples: ``N``.
      spatial_shape: shape of one sample of a field, e.g. ``(n, n)``.
      attrs: the root attributes as plain Python values.
    """

    def __init__(self, path: str | os.PathLike, *, require_complete: bool = True) -> None:
        self.path = pathlib.Path(path)
        self._file = _open_checked(self.path, "r")
        self.attrs = _read_attrs(self._file)
        self.fields: tuple[str, ...] = tuple(self.attrs["fields"])
        first = self._file[self.fields[0]]
        self.n_samples: int = first.shape[0]
        self.spatial_shape: tuple[int, ...] = tuple(first.shape[1:])
        if require_complete and not self.attrs.get("complete", False):
            done = int(self._file["meta/done"][()].sum())
            self.close()
            raise UserError(_incomplete_message(self.path, done, self.n_samples))

    @property
    def complete(self) -> bool:
        """Whether every sample is written and verified."""
        return bool(self.attrs.get("complete", False))

    def _field(self, name: str) -> h5py.Dataset:
        if name not in self.fields:
            raise UserError(f"{self.path}: no field {name!r} (fields: {', '.join(self.fields)})")
        return self._file[name]

    def dtype(self, field: str) -> np.dtype:
        """On-disk dtype of ``field``."""
        return self._field(field).dtype

    def field_shape(self, field: str) -> tuple[int, ...]:
        """Shape of one sample of ``field`` (``spatial_shape``, or e.g. ``(T, n, n)`` for a trajectory)."""
        return tuple(self._field(field).shape[1:])

    def read(self, field: str, index: int) -> np.ndarray:
        """Sample ``index`` of ``field``, shape ``spatial_shape``."""
        if not 0 <= index < self.n_samples:
            raise IndexError(f"sample {index} out of range [0, {self.n_samples})")
        return self._field(field)[index]

    def read_range(self, field: str, start: int, stop: int) -> np.ndarray:
        """Samples ``start:stop`` of ``field`` (a contiguous slice), shape ``(stop - start, *spatial_shape)``."""
        if not 0 <= start <= stop <= self.n_samples:
            raise IndexError(f"range {start}:{stop} out of [0, {self.n_samples}]")
        return self._field(field)[start:stop]

    def meta(self, name: str) -> np.ndarray:
        """The whole per-sample ``meta/<name>`` array (one of :data:`META_FIELDS`)."""
        if name == "retried" and name not in self._file["meta"]:
            return np.zeros(self.n_samples, dtype=bool)  # written before retries were recorded
        return self._file["meta"][name][()]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> DatasetReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_dataset(path: str | os.PathLike, require_complete: bool = True) -> DatasetReader:
    """Open the nopx dataset at ``path`` for reading.

    Raises:
      UserError: naming the file and the fix, when it is missing, not HDF5, not a nopx
        dataset, from a newer nopx, or incomplete (when ``require_complete``).
    """
    return DatasetReader(path, require_complete=require_complete)


def _early_allocated() -> h5py.h5p.PropDCID:
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return dcpl


def _runs(indices: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """Split ``indices`` into contiguous runs: ``(start, stop, positions in indices)``."""
    positions = np.argsort(indices, kind="stable")
    ordered = indices[positions]
    breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
    return [
        (int(block[0]), int(block[-1]) + 1, rows)
        for block, rows in zip(np.split(ordered, breaks), np.split(positions, breaks), strict=True)
    ]


class DatasetWriter:
    """Write samples into a nopx dataset in any order, resumably; use :meth:`create` or :meth:`resume`."""

    def __init__(self, path: pathlib.Path, file: h5py.File) -> None:
        self.path = path
        self._file = file
        self.attrs = _read_attrs(file)
        written = file["meta/order"][()][file["meta/done"][()]]
        self._next_order = int(written.max()) + 1 if written.size else 0

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        n_samples: int,
        fields: Mapping[str, tuple[int, ...]],
        n_params: int,
        dtype: str,
        attrs: Mapping[str, Any],
    ) -> DatasetWriter:
        """Create a new dataset of ``n_samples`` samples of each field (name → spatial shape).

        ``attrs`` adds to the format attributes (``pde``, ``recipe``, ``seed``, grid, ...).
        The file appears at ``path`` only once its whole layout is on disk.
        """
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(path.name + ".creating")
        with h5py.File(staging, "w") as file:
            file.attrs.update({
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "nopx_version": nopx.__version__,
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "fields": list(fields),
                **attrs,
                "complete": False,
            })
            for name, shape in fields.items():
                file.create_dataset(name, (n_samples, *shape), dtype=dtype,
                                    chunks=(1, *shape), dcpl=_early_allocated())
            meta = file.create_group("meta")
            columns = {
                "params": ((n_samples, n_params), dtype, np.nan),
                "done": ((n_samples,), bool, False),
                "order": ((n_samples,), np.int64, -1),
                "iterations": ((n_samples,), np.int64, -1),
                "matvecs": ((n_samples,), np.int64, -1),
                "residual": ((n_samples,), np.float64, np.nan),
                "seconds": ((n_samples,), np.float64, np.nan),
                "retried": ((n_samples,), bool, False),
            }
            for name, (shape, column_dtype, fill) in columns.items():
                meta.create_dataset(name, shape, dtype=column_dtype, fillvalue=fill, dcpl=_early_allocated())
        os.replace(staging, path)
        return cls(path, h5py.File(path, "r+"))

    @classmethod
    def resume(cls, path: str | os.PathLike) -> DatasetWriter:
        """Reopen an existing dataset to add the samples it lacks."""
        path = pathlib.Path(path)
        return cls(path, _open_checked(path, "r+"))

    @property
    def n_samples(self) -> int:
        return self._file["meta/done"].shape[0]

    def done(self) -> np.ndarray:
        """Which samples are written, ``(N,)`` bool."""
        return self._file["meta/done"][()]

    def write(
        self,
        indices: Sequence[int],
        fields: Mapping[str, np.ndarray],
        params: np.ndarray,
        *,
        iterations: Sequence[int],
        matvecs: Sequence[int],
        residual: Sequence[float],
        seconds: Sequence[float],
        retried: Sequence[bool] | None = None,
    ) -> None:
        """Store samples ``indices`` (local, in solve order) and then mark them done.

        ``fields[name]`` is ``(m, *spatial)``, ``params`` is ``(m, P)``, the stats are ``(m,)``;
        ``retried`` flags samples an engine missed and a direct solve redid (default: none).
        """
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return
        done = self._file["meta/done"][()]
        if done[indices].any() or np.unique(indices).size != indices.size:
            raise RuntimeError(f"{self.path}: samples {indices.tolist()} are already written or repeated")
        meta = self._file["meta"]
        columns = {
            "params": np.asarray(params),
            "order": self._next_order + np.arange(len(indices)),
            "iterations": np.asarray(iterations),
            "matvecs": np.asarray(matvecs),
            "residual": np.asarray(residual),
            "seconds": np.asarray(seconds),
            "retried": np.zeros(len(indices), dtype=bool) if retried is None else np.asarray(retried, dtype=bool),
        }
        runs = _runs(indices)
        for start, stop, rows in runs:
            for name, block in fields.items():
                self._file[name][start:stop] = block[rows]
            for name, column in columns.items():
                meta[name][start:stop] = column[rows]
        self._file.flush()
        # One write for all the flags, so that a kill leaves the whole batch done or not done.
        low, high = int(indices.min()), int(indices.max()) + 1
        flags = done[low:high]
        flags[indices - low] = True
        self._file["meta/done"][low:high] = flags
        self._file.flush()
        self._next_order += len(indices)

    def finish(self, rtol: float) -> None:
        """Verify every sample is done, once, within ``rtol``; then mark the file complete."""
        meta = self._file["meta"]
        done, order, residual = meta["done"][()], meta["order"][()], meta["residual"][()]
        if not done.all():
            raise RuntimeError(f"{self.path}: {int((~done).sum())} samples are not written")
        if not np.array_equal(np.sort(order), np.arange(self.n_samples)):
            raise RuntimeError(f"{self.path}: meta/order is not a permutation of the samples")
        if not (residual <= rtol).all():
            raise RuntimeError(f"{self.path}: residual {residual.max():.2e} exceeds rtol {rtol:.1e}")
        self._file.attrs["complete"] = True
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
