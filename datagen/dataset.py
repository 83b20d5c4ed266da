"""The nopx HDF5 dataset format: a crash-safe writer and a checking reader.

One file per dataset. Root attributes: ``format="nopx-dataset"``, ``format_version``,
``pde``, ``recipe`` (resolved YAML), ``seed``, ``first_index``, ``nopx_version``,
``created``, ``fields`` (names in order), the grid (``grid_shape``, ``grid_extent``,
``grid_origin``, ``grid_spacing``, ``solve_shape``) and ``complete``. One dataset per
field, ``(N, *spatial)``, chunked one sample per chunk; group ``meta/`` holds per-sample
``params (N, P)``, ``done``, ``order``, ``iterations``, ``matvecs``, ``residual``,
``seconds``, ``retried`` and ``checksum`` (CRC-32 of each sample of each field).
``data/README.md`` documents every entry.

Crash safety: every dataset's storage is allocated when the file is created (and the file
is created under a temporary name, then renamed), so later writes change raw data only,
never HDF5 metadata; a killed writer cannot corrupt the file's structure. A sample's data
is written and flushed before its ``done`` flag is set and flushed. One writer at a time
(:class:`~nopx.datagen.lock.WriteLock`). Readers refuse what they cannot trust, naming the file, the sample
and the fix: foreign, truncated or damaged files, and samples whose checksum fails.

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
import errno
import hashlib
import os
import pathlib
import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

import nopx
from nopx.datagen.faults import fault_point
from nopx.datagen.lock import WriteLock
from nopx.datagen.formats import ForeignReader, open_foreign, resolve_format
from nopx.errors import UserError

__all__ = ["DatasetReader", "DatasetWriter", "WriteLock", "open_dataset", "FORMAT", "FORMAT_VERSION",
           "META_FIELDS"]

FORMAT = "nopx-dataset"
FORMAT_VERSION = 1
META_FIELDS = ("params", "done", "order", "iterations", "matvecs", "residual", "seconds", "retried", "checksum")
# Columns a file may lack: written before they existed (reads as all false / not checked).
OPTIONAL_META = ("retried", "checksum")
# Samples per read while verifying a whole file.
VERIFY_BLOCK = 64

_REGENERATE = "copy it again or regenerate it with `nopx datagen`"


def _open_checked(path: str | os.PathLike, mode: str) -> h5py.File:
    """Open a nopx dataset; anything else (missing, not HDF5, truncated, foreign, damaged) is a UserError."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such dataset file; create it with "
                        f"`nopx datagen --config RECIPE --out {path}`")
    if not h5py.is_hdf5(path):
        raise UserError(f"{path}: not an HDF5 file; point to a dataset written by `nopx datagen`")
    try:
        file = h5py.File(path, mode)
    except OSError as err:
        raise UserError(_open_failed_message(path, err)) from None
    try:
        _check_layout(path, file)
    except UserError:
        file.close()
        raise
    return file


def _field_names(file: h5py.File) -> tuple[str, ...]:
    """The ``fields`` attribute as a tuple (a lone name counts as one)."""
    fields = _plain(file.attrs.get("fields"))
    if isinstance(fields, str):
        return (fields,)
    return tuple(fields) if isinstance(fields, list) else ()


def _open_failed_message(path: pathlib.Path, err: OSError) -> str:
    truncated = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", str(err))
    if truncated:
        size, expected = truncated.groups()
        return (f"{path}: truncated: {size} of its {expected} bytes are on disk (an interrupted copy "
                f"or a full disk cut it short), so no sample can be trusted; {_REGENERATE}")
    holder = WriteLock(path).holder()
    if holder is not None:
        return (f"{path}: being written by process {holder[0]} on {holder[1]}; wait until that "
                f"`nopx datagen` ends (or, if it is gone, delete {WriteLock(path).path})")
    return f"{path}: cannot open the dataset ({err}); the file is damaged or in use: {_REGENERATE}"


def _check_layout(path: pathlib.Path, file: h5py.File) -> None:
    """Refuse a file that is not a whole nopx dataset of a version this nopx reads."""
    if file.attrs.get("format") != FORMAT:
        raise UserError(f"{path}: an HDF5 file but not a nopx dataset (no format='{FORMAT}' "
                        f"attribute); make one with `nopx datagen --config RECIPE --out {path}`, or name its "
                        f"layout with --format / data.format (fno-mat, pdebench, the-well)")
    version = _plain(file.attrs.get("format_version"))
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(f"{path}: format_version is {version!r}, not a nopx dataset version (1 to "
                        f"{FORMAT_VERSION}); the file is damaged or was not written by nopx: {_REGENERATE}")
    if version > FORMAT_VERSION:
        raise UserError(f"{path}: written by a newer nopx (format_version {version}; this nopx "
                        f"{nopx.__version__} reads up to {FORMAT_VERSION}); upgrade nopx to read it")
    damaged = f"the file is damaged or was changed by another program; {_REGENERATE}"
    fields = _field_names(file)
    if not fields or not all(isinstance(name, str) for name in fields):
        raise UserError(f"{path}: the 'fields' attribute is missing or not a list of names; {damaged}")
    missing = [name for name in (*fields, "meta") if name not in file]
    if missing:
        raise UserError(f"{path}: lists {', '.join(missing)} but holds no such "
                        f"{'group' if missing == ['meta'] else 'dataset'}; {damaged}")
    for name in fields:
        data = file[name]
        if not isinstance(data, h5py.Dataset) or data.dtype.kind != "f" or data.ndim < 2:
            raise UserError(f"{path}: field {name!r} is not a floating-point array of samples; {damaged}")
    n_samples = file[fields[0]].shape[0]
    grid_shape = _plain(file.attrs.get("grid_shape"))
    for name in fields:
        data = file[name]
        if data.shape[0] != n_samples:
            raise UserError(f"{path}: field {name!r} has {data.shape[0]} samples but {fields[0]!r} has "
                            f"{n_samples}; {damaged}")
        if isinstance(grid_shape, list) and list(data.shape[-len(grid_shape):]) != grid_shape:
            raise UserError(f"{path}: field {name!r} has sample shape {data.shape[1:]} but the grid is "
                            f"{tuple(grid_shape)} (grid_shape attribute); {damaged}")
    for name in META_FIELDS:
        column = file["meta"].get(name)
        if column is None and name in OPTIONAL_META:
            continue
        if not isinstance(column, h5py.Dataset) or column.ndim < 1 or column.shape[0] != n_samples:
            shape = "missing" if column is None else f"shaped {getattr(column, 'shape', '?')}"
            raise UserError(f"{path}: meta/{name} is {shape}, not one entry per sample ({n_samples}); {damaged}")


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


def _checksum(sample: np.ndarray) -> int:
    """CRC-32 of one sample's bytes as stored (``meta/checksum``)."""
    return zlib.crc32(np.ascontiguousarray(sample))


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
        self.fields: tuple[str, ...] = _field_names(self._file)
        first = self._file[self.fields[0]]
        self.n_samples: int = first.shape[0]
        self.spatial_shape: tuple[int, ...] = tuple(first.shape[1:])
        self._done = self._file["meta/done"][()].astype(bool)
        checksums = self._file["meta"].get("checksum")
        self._checksums = None if checksums is None else checksums[()]
        if require_complete and not (self.complete and self._done.all()):
            self.close()
            raise UserError(_incomplete_message(self.path, int(self._done.sum()), self.n_samples))

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
        """Sample ``index`` of ``field``, shape ``spatial_shape``; a damaged sample is a UserError."""
        if not 0 <= index < self.n_samples:
            raise IndexError(f"sample {index} out of range [0, {self.n_samples})")
        return self.read_range(field, index, index + 1)[0]

    def read_range(self, field: str, start: int, stop: int) -> np.ndarray:
        """Samples ``start:stop`` of ``field`` (a contiguous slice), shape ``(stop - start, *spatial_shape)``.

        Every written sample is checked against its stored checksum (files that have them).

        Raises:
          UserError: naming the first sample whose bytes are damaged or unreadable.
        """
        if not 0 <= start <= stop <= self.n_samples:
            raise IndexError(f"range {start}:{stop} out of [0, {self.n_samples}]")
        data = self._field(field)
        try:
            block = data[start:stop]
        except OSError as err:
            raise UserError(f"{self.path}: samples {start}..{stop - 1} of field {field!r} cannot be read "
                            f"({err}); {_REGENERATE}") from None
        if self._checksums is not None:
            column = self.fields.index(field)
            for offset, sample in enumerate(block):
                index = start + offset
                if self._done[index] and _checksum(sample) != self._checksums[index, column]:
                    raise UserError(f"{self.path}: sample {index} of field {field!r} is corrupted (its "
                                    f"bytes do not match the checksum written with them); {_REGENERATE}")
        return block

    def verify(self) -> dict[str, str]:
        """Read every written sample: checksums and finite values; the SHA-256 of each field and of ``params``.

        A hash covers the written samples in index order (each sample's bytes as stored), so two
        complete files with equal hashes hold bit-identical data whatever process, worker count
        or shard split made them.

        Raises:
          UserError: naming the first damaged or non-finite sample and the fix.
        """
        order = self.meta("order")[self._done]
        whole = self.complete and self._done.all()
        if np.unique(order).size != order.size or (whole and order.max(initial=-1) != order.size - 1):
            raise UserError(f"{self.path}: meta/order is not a permutation of the written samples (a sample "
                            f"written twice, or the file changed by another program); {_REGENERATE}")
        hashes = {name: hashlib.sha256() for name in (*self.fields, "params")}
        params = self.meta("params")
        for start in range(0, self.n_samples, VERIFY_BLOCK):
            stop = min(start + VERIFY_BLOCK, self.n_samples)
            blocks = {name: self.read_range(name, start, stop) for name in self.fields}
            blocks["params"] = params[start:stop]
            for name, block in blocks.items():
                for offset in np.flatnonzero(self._done[start:stop]):
                    sample = block[offset]
                    if not np.isfinite(sample).all():
                        raise UserError(f"{self.path}: sample {start + offset} of "
                                        f"{'meta/params' if name == 'params' else f'field {name!r}'} "
                                        f"holds NaN or Inf values; the file was changed after it was "
                                        f"written or made by a broken writer: {_REGENERATE}")
                    hashes[name].update(np.ascontiguousarray(sample).tobytes())
        return {name: digest.hexdigest() for name, digest in hashes.items()}

    def meta(self, name: str) -> np.ndarray:
        """The whole per-sample ``meta/<name>`` array (one of :data:`META_FIELDS`)."""
        if name == "retried" and name not in self._file["meta"]:
            return np.zeros(self.n_samples, dtype=bool)  # written before retries were recorded
        if name == "done":
            return self._done.copy()
        return self._file["meta"][name][()]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> DatasetReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_dataset(path: str | os.PathLike, require_complete: bool = True,
                 format: str = "auto") -> DatasetReader | ForeignReader:
    """Open the dataset at ``path`` for reading.

    ``format`` is ``nopx``, a foreign layout read in place (``fno-mat``, ``pdebench``,
    ``the-well``: :mod:`nopx.datagen.formats`, same reading interface) or ``auto``
    (detected from the file).

    Raises:
      UserError: naming the file and the fix, when it is missing, not HDF5, truncated, not
        a nopx dataset, from a newer nopx, damaged in its layout, or incomplete (when
        ``require_complete``). Reads refuse damaged samples (:meth:`DatasetReader.read_range`);
        :meth:`DatasetReader.verify` checks the whole file.
    """
    fmt = resolve_format(path, format)
    if fmt != "nopx":
        return open_foreign(path, fmt)
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
    """Write samples into a nopx dataset in any order, resumably; use :meth:`create` or :meth:`resume`.

    The writer holds the dataset's :class:`WriteLock` until :meth:`close`. A failed write (a
    full disk) raises UserError; the samples flagged done before it stay valid.
    """

    def __init__(self, path: pathlib.Path, file: h5py.File, lock: WriteLock) -> None:
        self.path = path
        self._file = file
        self._lock = lock
        self.attrs = _read_attrs(file)
        self.fields = _field_names(file)
        self._checksums = "checksum" in file["meta"]  # files from before checksums get none
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
        lock = WriteLock(path)
        lock.acquire()
        staging = path.with_name(path.name + ".creating")
        try:
            if path.exists():
                raise UserError(f"{path}: appeared while this run started (another `nopx datagen`?); "
                                f"pass --resume to complete it, or delete it")
            _create_layout(staging, n_samples, fields, n_params, dtype, attrs)
            fault_point("create")
            os.replace(staging, path)
            return cls(path, h5py.File(path, "r+"), lock)
        except OSError as err:
            staging.unlink(missing_ok=True)
            lock.release()
            raise UserError(f"{path}: cannot create the dataset ({_reason(err)}); free disk space (it needs "
                            f"about {_layout_bytes(n_samples, fields, dtype) / 2**20:.0f} MiB) or choose "
                            f"another --out, then run again") from None
        except BaseException:
            lock.release()
            raise

    @classmethod
    def resume(cls, path: str | os.PathLike) -> DatasetWriter:
        """Reopen an existing dataset to add the samples it lacks."""
        path = pathlib.Path(path)
        lock = WriteLock(path)
        lock.acquire()
        try:
            return cls(path, _open_checked(path, "r+"), lock)
        except BaseException:
            lock.release()
            raise

    @property
    def n_samples(self) -> int:
        return self._file["meta/done"].shape[0]

    def done(self) -> np.ndarray:
        """Which samples are written, ``(N,)`` bool."""
        return self._file["meta/done"][()]

    @property
    def complete(self) -> bool:
        """Whether the file is marked complete and every sample is done."""
        return bool(self._file.attrs.get("complete", False)) and bool(self.done().all())

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

        Raises:
          UserError: a sample already written, non-finite data (nothing of the batch is
            stored), or a failed write (a full disk: the batch is not marked done).
        """
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return
        done = self._file["meta/done"][()]
        if done[indices].any() or np.unique(indices).size != indices.size:
            raise UserError(f"{self.path}: samples {indices.tolist()} are already written or repeated; "
                            f"was the file changed by another program? {_REGENERATE}")
        stored = {name: np.asarray(fields[name], dtype=self._file[name].dtype) for name in self.fields}
        params = np.asarray(params, dtype=self._file["meta/params"].dtype)
        self._refuse_non_finite(indices, {**stored, "params": params})
        columns = {
            "params": params,
            "order": self._next_order + np.arange(len(indices)),
            "iterations": np.asarray(iterations),
            "matvecs": np.asarray(matvecs),
            "residual": np.asarray(residual),
            "seconds": np.asarray(seconds),
            "retried": np.zeros(len(indices), dtype=bool) if retried is None else np.asarray(retried, dtype=bool),
        }
        if self._checksums:
            columns["checksum"] = np.array([[_checksum(stored[name][row]) for name in self.fields]
                                            for row in range(len(indices))], dtype=np.uint32)
        meta = self._file["meta"]
        runs = _runs(indices)
        # The small meta columns in one point selection each (h5py's is slow on large blocks).
        ordered = np.concatenate([rows for *_, rows in runs])
        selection = slice(runs[0][0], runs[0][1]) if len(runs) == 1 else indices[ordered].tolist()
        try:
            for start, stop, rows in runs:
                for name, block in stored.items():
                    self._file[name][start:stop] = block[rows]
            for name, column in columns.items():
                meta[name][selection] = column[ordered]
            fault_point("write")
            self._file.flush()
            fault_point("flush")
            # One write for all the flags, so that a kill leaves the whole batch done or not done.
            low, high = int(indices.min()), int(indices.max()) + 1
            flags = done[low:high]
            flags[indices - low] = True
            self._file["meta/done"][low:high] = flags
            fault_point("done")
            self._file.flush()
        except OSError as err:
            raise UserError(f"{self.path}: writing samples {_sample_list(indices)} failed ({_reason(err)}); "
                            f"nothing else is damaged: free disk space, then add the missing samples "
                            f"with `nopx datagen ... --resume`") from None
        self._next_order += len(indices)

    def _refuse_non_finite(self, indices: np.ndarray, arrays: Mapping[str, np.ndarray]) -> None:
        for name, block in arrays.items():
            finite = np.isfinite(block.reshape(len(indices), -1)).all(axis=1)
            if not finite.all():
                index = int(indices[np.argmin(finite)])
                raise UserError(
                    f"{self.path}: sample {index} of {'meta/params' if name == 'params' else f'field {name!r}'} "
                    f"is NaN or Inf (a diverged solve, or a value beyond the storage dtype's range) and "
                    f"was not stored; check the recipe's PDE parameters and solver, or use "
                    f"storage.dtype=float64 for very large values")

    def finish(self, rtol: float) -> None:
        """Verify every sample is done, once, within ``rtol``; then mark the file complete."""
        meta = self._file["meta"]
        done, order, residual = meta["done"][()], meta["order"][()], meta["residual"][()]
        if not done.all():
            raise UserError(f"{self.path}: {int((~done).sum())} samples are not written (the first is "
                            f"sample {int(np.argmin(done))}); add them with `nopx datagen ... --resume`")
        if not np.array_equal(np.sort(order), np.arange(self.n_samples)):
            raise UserError(f"{self.path}: meta/order is not a permutation of the samples; the file was "
                            f"changed by another program: {_REGENERATE}")
        within = residual <= rtol
        if not within.all():
            worst = int(np.argmin(within))
            raise UserError(f"{self.path}: sample {worst} has relative residual {residual[worst]:.2e} > "
                            f"solver.rtol {rtol:.1e}; the file does not meet its recipe: {_REGENERATE}")
        try:
            fault_point("finish")
            self._file.attrs["complete"] = True
            self._file.flush()
        except OSError as err:
            raise UserError(f"{self.path}: marking the file complete failed ({_reason(err)}); free disk space "
                            f"and run `nopx datagen ... --resume` to finish it") from None

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._lock.release()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            self.close()
        except OSError:
            if exc_type is None:
                raise
            # Already failing (e.g. a full disk): the close's own error adds nothing.


def _reason(err: OSError) -> str:
    """A failed write's cause in words (HDF5's own message is a page long)."""
    return "no space left on device" if err.errno == errno.ENOSPC else str(err)


def _sample_list(indices: np.ndarray) -> str:
    shown = ", ".join(map(str, sorted(indices.tolist())[:8]))
    return shown + (", ..." if indices.size > 8 else "")


def _layout_bytes(n_samples: int, fields: Mapping[str, tuple[int, ...]], dtype: str) -> int:
    return n_samples * sum(int(np.prod(shape)) for shape in fields.values()) * np.dtype(dtype).itemsize


def _create_layout(staging: pathlib.Path, n_samples: int, fields: Mapping[str, tuple[int, ...]],
                   n_params: int, dtype: str, attrs: Mapping[str, Any]) -> None:
    """Write the whole layout of a new dataset, every storage allocated, at ``staging``."""
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
            "checksum": ((n_samples, len(fields)), np.uint32, 0),
        }
        for name, (shape, column_dtype, fill) in columns.items():
            meta.create_dataset(name, shape, dtype=column_dtype, fillvalue=fill, dcpl=_early_allocated())
