"""The HDF5 dataset format: writer, reader, and the refusals."""

import hashlib
import os
import socket
import subprocess

import h5py
import numpy as np
import pytest

from nopx.datagen.dataset import FORMAT, FORMAT_VERSION, DatasetWriter, WriteLock, open_dataset
from nopx.errors import UserError


def _write(path, n_samples=5, written=None, finish=True):
    writer = DatasetWriter.create(path, n_samples=n_samples, fields={"a": (4, 4), "u": (4, 4)}, n_params=2,
                                  dtype="float32", attrs={"pde": "demo", "recipe": "pde: demo\n", "seed": 3})
    with writer:
        indices = list(range(n_samples)) if written is None else written
        m = len(indices)
        values = np.arange(m, dtype=np.float64)[:, None, None] + np.zeros((m, 4, 4))
        # Write in two batches, the second out of order.
        for part in (indices[: m // 2], indices[m // 2:][::-1]):
            rows = [indices.index(i) for i in part]
            writer.write(part, {"a": values[rows], "u": -values[rows]}, np.ones((len(part), 2)),
                         iterations=[0] * len(part), matvecs=[0] * len(part),
                         residual=[1e-12] * len(part), seconds=[0.01] * len(part))
        if finish:
            writer.finish(rtol=1e-8)
    return path


def test_round_trip(tmp_path):
    path = _write(tmp_path / "d.h5")
    with open_dataset(path) as data:
        assert data.fields == ("a", "u")
        assert (data.n_samples, data.spatial_shape) == (5, (4, 4))
        assert data.complete
        assert data.attrs["format"] == FORMAT and data.attrs["format_version"] == FORMAT_VERSION
        assert data.attrs["pde"] == "demo" and data.attrs["seed"] == 3 and data.attrs["nopx_version"]
        assert data.attrs["created"].startswith("20")
        assert data.read("a", 3).dtype == np.float32 and data.read("a", 3)[0, 0] == 3.0
        block = data.read_range("u", 1, 4)
        assert block.shape == (3, 4, 4) and list(block[:, 0, 0]) == [-1.0, -2.0, -3.0]
        assert data.meta("done").all()
        assert sorted(data.meta("order")) == list(range(5))
        with pytest.raises(UserError, match="no field 'w'"):
            data.read("w", 0)
        with pytest.raises(IndexError):
            data.read("a", 5)
        with pytest.raises(IndexError):
            data.read_range("a", 2, 9)


def test_layout_one_sample_per_chunk(tmp_path):
    path = _write(tmp_path / "d.h5")
    with h5py.File(path) as file:
        assert file["u"].chunks == (1, 4, 4)
        assert set(file["meta"]) == {"params", "done", "order", "iterations", "matvecs", "residual", "seconds",
                                     "retried", "checksum"}
        assert file["meta/params"].shape == (5, 2)
    assert not (tmp_path / "d.h5.creating").exists()


def test_refuses_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"nothere\.h5: no such dataset file; create it with `nopx datagen"):
        open_dataset(tmp_path / "nothere.h5")


def test_refuses_non_hdf5_file(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("hello")
    with pytest.raises(UserError, match=r"text\.h5: not an HDF5 file"):
        open_dataset(path)


def test_refuses_foreign_hdf5_file(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as file:
        file["x"] = np.zeros(3)
    with pytest.raises(UserError, match=r"foreign\.h5: an HDF5 file but not a nopx dataset"):
        open_dataset(path)


def test_refuses_newer_format(tmp_path):
    path = _write(tmp_path / "d.h5")
    with h5py.File(path, "r+") as file:
        file.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(UserError, match=r"d\.h5: written by a newer nopx .* upgrade nopx"):
        open_dataset(path)


def test_refuses_incomplete_file_unless_asked(tmp_path):
    path = _write(tmp_path / "d.h5", written=[0, 2], finish=False)
    with pytest.raises(UserError, match=r"d\.h5: incomplete dataset \(2 of 5 samples done\).*--resume"):
        open_dataset(path)
    with open_dataset(path, require_complete=False) as data:
        assert not data.complete
        assert list(data.meta("done")) == [True, False, True, False, False]
        assert list(data.meta("order")[[1, 3, 4]]) == [-1, -1, -1]


def test_writer_refuses_duplicates_and_unfinished_files(tmp_path):
    path = _write(tmp_path / "d.h5", written=[1], finish=False)
    with DatasetWriter.resume(path) as writer:
        args = dict(iterations=[0], matvecs=[0], residual=[0.0], seconds=[0.0])
        with pytest.raises(UserError, match=r"d\.h5: samples \[1\] are already written"):
            writer.write([1], {"a": np.zeros((1, 4, 4)), "u": np.zeros((1, 4, 4))}, np.zeros((1, 2)), **args)
        with pytest.raises(UserError, match=r"4 samples are not written \(the first is sample 0\).*--resume"):
            writer.finish(rtol=1e-8)
        assert list(writer.done()) == [False, True, False, False, False]


def test_resumed_writer_continues_the_order(tmp_path):
    path = _write(tmp_path / "d.h5", written=[4, 0], finish=False)
    with DatasetWriter.resume(path) as writer:
        args = dict(iterations=[0] * 3, matvecs=[0] * 3, residual=[0.0] * 3, seconds=[0.0] * 3)
        writer.write([3, 1, 2], {"a": np.zeros((3, 4, 4)), "u": np.zeros((3, 4, 4))}, np.zeros((3, 2)), **args)
        writer.finish(rtol=1e-8)
    with open_dataset(path) as data:
        assert list(data.meta("order")) == [1, 3, 4, 2, 0]


def test_reads_refuse_a_corrupted_sample_naming_it(tmp_path):
    path = _write(tmp_path / "d.h5")
    with h5py.File(path) as file:
        offset = file["u"].id.get_chunk_info(3).byte_offset
    with path.open("r+b") as raw:
        raw.seek(offset + 8)
        raw.write(b"\x00\x01\x02\x03")
    with open_dataset(path) as data:
        np.testing.assert_array_equal(data.read("u", 2), -2.0)  # the others are fine
        for read in (lambda: data.read("u", 3), lambda: data.read_range("u", 1, 5), data.verify):
            with pytest.raises(UserError, match=r"d\.h5: sample 3 of field 'u' is corrupted .*regenerate"):
                read()


def test_verify_hashes_each_field_sample_by_sample(tmp_path):
    with open_dataset(_write(tmp_path / "one.h5")) as one, open_dataset(_write(tmp_path / "two.h5")) as two:
        hashes = one.verify()
        assert hashes == two.verify() and set(hashes) == {"a", "u", "params"}
        expected = hashlib.sha256(b"".join(one.read("a", i).tobytes() for i in range(5))).hexdigest()
        assert hashes["a"] == expected


def test_writer_refuses_non_finite_samples(tmp_path):
    path = _write(tmp_path / "d.h5", written=[], finish=False)
    with DatasetWriter.resume(path) as writer:
        bad = np.zeros((2, 4, 4))
        bad[1, 2, 2] = np.inf
        with pytest.raises(UserError, match=r"d\.h5: sample 4 of field 'u' is NaN or Inf .* not stored"):
            writer.write([3, 4], {"a": np.zeros((2, 4, 4)), "u": bad}, np.zeros((2, 2)), iterations=[0, 0],
                         matvecs=[0, 0], residual=[0.0, 0.0], seconds=[0.0, 0.0])
        assert not writer.done().any()


def test_a_failed_write_keeps_what_is_done(tmp_path, monkeypatch):
    path = _write(tmp_path / "d.h5", written=[0], finish=False)
    monkeypatch.setenv("NOPX_FAULT", "flush:1:enospc")
    with DatasetWriter.resume(path) as writer:
        with pytest.raises(UserError, match=r"writing samples 1, 2 failed \(no space left on device\).*--resume"):
            writer.write([2, 1], {"a": np.ones((2, 4, 4)), "u": np.ones((2, 4, 4))}, np.zeros((2, 2)),
                         iterations=[0, 0], matvecs=[0, 0], residual=[0.0, 0.0], seconds=[0.0, 0.0])
        assert list(writer.done()) == [True, False, False, False, False]
    assert not WriteLock(path).path.exists()


def test_a_failed_create_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("NOPX_FAULT", "create:1:enospc")
    with pytest.raises(UserError, match=r"d\.h5: cannot create the dataset \(no space left on device\); free disk"):
        _write(tmp_path / "d.h5")
    assert list(tmp_path.iterdir()) == []


def test_one_writer_at_a_time_and_stale_locks_are_taken_over(tmp_path):
    path = _write(tmp_path / "d.h5", written=[0], finish=False)
    lock = WriteLock(path)
    with subprocess.Popen(["sleep", "30"]) as alive:
        lock.path.write_text(f"{alive.pid} {socket.gethostname()}\n")
        with pytest.raises(UserError, match=rf"another process \(PID {alive.pid} on .*\) is writing .* delete"):
            DatasetWriter.resume(path)
        alive.kill()
    lock.path.write_text(f"{alive.pid} {socket.gethostname()}\n")  # its process is gone: stale
    with DatasetWriter.resume(path) as writer:
        assert lock.holder() == (os.getpid(), socket.gethostname()) and writer.done()[0]
    assert not lock.path.exists()
    lock.path.write_text("1 some-other-host\n")  # cannot tell whether it lives: refused
    with pytest.raises(UserError, match="some-other-host"):
        DatasetWriter.resume(path)
