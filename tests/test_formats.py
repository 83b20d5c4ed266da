"""Foreign dataset layouts read in place: FNO .mat (v5 and v7.3), PDEBench, The Well.

Every file here is small and written in the published layout (FNO's ``MatReader``,
PDEBench's ``FNODatasetSingle``/``FNODatasetMult``, The Well's ``docs/data_format.md``);
nothing is downloaded.
"""

from __future__ import annotations

import pathlib

import h5py
import numpy as np
import pytest
import scipy.io
import yaml

import nopx.datagen as dg
from helpers import run_nopx
from nopx.errors import UserError

N, S, T = 6, 8, 5
RNG = np.random.default_rng(0)


def _mat_v73(path: pathlib.Path, variables: dict[str, np.ndarray]) -> pathlib.Path:
    """A MATLAB v7.3 file: HDF5 behind a 512-byte MATLAB header, arrays stored column-major."""
    with h5py.File(path, "w", userblock_size=512) as file:
        for name, value in variables.items():
            file[name] = np.ascontiguousarray(value.T)  # MATLAB writes every axis reversed
    with path.open("r+b") as raw:
        raw.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema")
    return path


def test_fno_darcy_v73_is_read_untransposed_and_lazily(tmp_path):
    coeff, sol = RNG.random((N, S, S)), RNG.random((N, S, S))
    path = _mat_v73(tmp_path / "piececonst_r8_N6.mat", {"coeff": coeff, "sol": sol, "Kcoeff": coeff})
    assert dg.detect_format(path) == "fno-mat"
    with dg.open_dataset(path) as reader:
        assert reader.fields == ("a", "u") and reader.n_samples == N
        assert reader.attrs["pde"] == "darcy" and reader.attrs["grid_spacing"] == [1 / (S - 1)] * 2
        np.testing.assert_array_equal(reader.read("a", 2), coeff[2])
        np.testing.assert_array_equal(reader.read_range("u", 1, 4), sol[1:4])


def test_fno_navier_stokes_v73_moves_time_first_and_joins_w(tmp_path):
    a, u = RNG.random((N, S, S)), RNG.random((N, S, S, T))
    path = _mat_v73(tmp_path / "ns.mat", {"a": a, "u": u, "t": np.arange(1.0, T + 1)[None]})
    with dg.open_dataset(path, format="fno-mat") as reader:
        assert reader.attrs["pde"] == "navier_stokes" and reader.attrs["times"] == list(range(T + 1))
        assert reader.field_shape("u") == (T, S, S) and reader.field_shape("w") == (T + 1, S, S)
        np.testing.assert_array_equal(reader.read("u", 3), np.moveaxis(u[3], -1, 0))
        w = reader.read_range("w", 0, 2)
        np.testing.assert_array_equal(w[:, 0], a[:2])
        np.testing.assert_array_equal(w[:, 1:], np.moveaxis(u[:2], -1, 1))


def test_fno_burgers_v5(tmp_path):
    a, u = RNG.random((N, 16)), RNG.random((N, 16))
    path = tmp_path / "burgers_data_R10.mat"
    scipy.io.savemat(path, {"a": a, "u": u})
    assert dg.detect_format(path) == "fno-mat"
    with dg.open_dataset(path) as reader:
        assert reader.attrs["pde"] == "burgers" and reader.spatial_shape == (16,)
        np.testing.assert_array_equal(reader.read("u", 5), u[5])


def _pdebench_1d(path: pathlib.Path, tensor: np.ndarray) -> pathlib.Path:
    with h5py.File(path, "w") as file:
        file["tensor"] = tensor
        file["x-coordinate"] = (np.arange(tensor.shape[2]) + 0.5) / tensor.shape[2]
        file["t-coordinate"] = np.linspace(0, 2, tensor.shape[1] + 1)
    return path


def test_pdebench_layouts(tmp_path):
    tensor = RNG.random((N, T, 16)).astype(np.float32)
    with dg.open_dataset(_pdebench_1d(tmp_path / "1D_Burgers_Sols_Nu0.1.hdf5", tensor)) as reader:
        assert reader.attrs["format"] == "pdebench" and reader.field_shape("u") == (T, 16)
        assert reader.attrs["grid_origin"] == [1 / 32] and len(reader.attrs["times"]) == T
        np.testing.assert_array_equal(reader.read("u", 4), tensor[4])

    nu, solution = RNG.random((N, S, S)), RNG.random((N, 1, S, S))
    darcy = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    with h5py.File(darcy, "w") as file:
        file["nu"], file["tensor"] = nu, solution
        file["x-coordinate"] = file["y-coordinate"] = np.linspace(0, 1, S)
    with dg.open_dataset(darcy) as reader:
        assert reader.fields == ("nu", "u") and reader.field_shape("u") == (S, S)
        np.testing.assert_array_equal(reader.read("u", 1), solution[1, 0])

    data = RNG.random((3, T, S, S, 2))
    groups = tmp_path / "2D_diff-react_NA_NA.h5"
    with h5py.File(groups, "w") as file:
        for i in range(3):
            sample = file.create_group(f"{i:04d}")
            sample["data"] = data[i]
            sample["grid/x"] = sample["grid/y"] = np.linspace(-1, 1, S)
            sample["grid/t"] = np.linspace(0, 5, T)
    with dg.open_dataset(groups) as reader:
        assert reader.fields == ("u0", "u1") and reader.n_samples == 3
        np.testing.assert_array_equal(reader.read_range("u1", 1, 3), data[1:3, ..., 1])

    cfd = tmp_path / "1D_CFD_Rand.hdf5"
    with h5py.File(cfd, "w") as file:
        for name in ("density", "pressure", "Vx"):
            file[name] = RNG.random((N, T, 16))
        file["x-coordinate"], file["t-coordinate"] = np.linspace(0, 1, 16), np.linspace(0, 1, T + 1)
    with dg.open_dataset(cfd) as reader:
        assert reader.fields == ("density", "pressure", "Vx")


def _the_well(path: pathlib.Path) -> dict[str, np.ndarray]:
    """A 2-D file of The Well: a scalar, a vector, and a constant field varying only along x."""
    fields = {"tracer": RNG.random((N, T, S, 4)).astype(np.float32),
              "velocity": RNG.random((N, T, S, 4, 2)).astype(np.float32),
              "mask": RNG.random((S, 1)).astype(np.float32)}
    with h5py.File(path, "w") as file:
        file.attrs.update(dataset_name="shear_demo", grid_type="cartesian", n_spatial_dims=2,
                          n_trajectories=N, simulation_parameters=["Re"], Re=100.0)
        dims = file.create_group("dimensions")
        dims.attrs["spatial_dims"] = ["x", "y"]
        dims["time"], dims["x"], dims["y"] = np.linspace(0, 1, T), np.arange(S) / S, np.arange(4) / 4
        bc = file.create_group("boundary_conditions/x_periodic")
        bc.attrs.update(bc_type="PERIODIC", associated_dims=["x"], sample_varying=False, time_varying=False)
        bc["mask"] = np.ones(S, bool)
        file.create_group("scalars").attrs["field_names"] = ["Re"]
        for order, names in enumerate((["tracer", "mask"], ["velocity"], [])):
            group = file.create_group(f"t{order}_fields")
            group.attrs["field_names"] = names
            for name in names:
                group[name] = fields[name]
                constant = name == "mask"
                group[name].attrs.update(sample_varying=not constant, time_varying=not constant,
                                         dim_varying=[True, not constant])
    return fields


def test_the_well_scalar_vector_and_constant_fields(tmp_path):
    path = tmp_path / "shear_demo.hdf5"
    fields = _the_well(path)
    assert dg.detect_format(path) == "the-well"
    with dg.open_dataset(path) as reader:
        assert reader.fields == ("tracer", "mask", "velocity_x", "velocity_y")
        assert reader.attrs["pde"] == "shear_demo" and reader.attrs["boundary_conditions"] == ["x: periodic"]
        assert reader.attrs["parameters"] == {"Re": 100.0} and reader.field_shape("velocity_y") == (T, S, 4)
        np.testing.assert_array_equal(reader.read("velocity_y", 2), fields["velocity"][2, ..., 1])
        np.testing.assert_array_equal(reader.read_range("mask", 0, 2),
                                      np.broadcast_to(fields["mask"], (2, S, 4)))


def _tensor_without_coordinates(path: pathlib.Path) -> None:
    with h5py.File(path, "w") as file:
        file["tensor"] = np.zeros((2, 3, 4))


def _well_without_dimensions(path: pathlib.Path) -> None:
    with h5py.File(path, "w") as file:
        file.create_group("t0_fields")


@pytest.mark.parametrize("fmt, write, missing", [
    ("pdebench", _tensor_without_coordinates, r"no dataset 'x-coordinate'"),
    ("fno-mat", lambda path: _mat_v73(path, {"coeff": np.zeros((2, 4, 4))}),
     r"expected 'coeff' and 'sol'.*variables found: coeff \(2, 4, 4\)"),
    ("the-well", _well_without_dimensions, r"no group 'dimensions'"),
])
def test_a_file_not_in_the_format_is_refused_naming_what_is_missing(tmp_path, fmt, write, missing):
    path = tmp_path / "bad.h5"
    write(path)
    with pytest.raises(UserError, match=missing):
        dg.open_dataset(path, format=fmt)
    result = run_nopx("info", str(path), "--format", fmt)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"not a {fmt} file as published" in result.stderr


def test_convert_writes_a_verified_nopx_dataset_naming_its_source(tmp_path):
    path = _pdebench_1d(tmp_path / "adv.hdf5", RNG.random((N, T, 16)).astype(np.float32))
    info = run_nopx("info", str(path))
    assert info.returncode == 0 and "format pdebench" in info.stdout and "<- tensor" in info.stdout
    out = tmp_path / "adv_nopx.h5"
    result = run_nopx("convert", str(path), str(out))
    assert result.returncode == 0, result.stderr
    with dg.open_dataset(path) as source, dg.open_dataset(out) as copy:
        assert copy.attrs["source_format"] == "pdebench" and copy.attrs["times"] == source.attrs["times"]
        assert yaml.safe_load(copy.attrs["recipe"])["converted_from"]["format"] == "pdebench"
        np.testing.assert_array_equal(copy.read_range("u", 0, N), source.read_range("u", 0, N))
    assert run_nopx("info", str(out)).returncode == 0
    again = run_nopx("convert", str(path), str(out))
    assert again.returncode == 2 and "exists" in again.stderr


def test_train_and_eval_read_a_foreign_file_in_place(tmp_path, capsys):
    """FNO Burgers .mat (v7.3), subsampled 2x for training; in-process (no CLI start-up)."""
    from nopx import config, training

    x = np.arange(32) / 32
    a = np.stack([np.sin(2 * np.pi * (x + shift)) for shift in RNG.random(40)])
    path = _mat_v73(tmp_path / "burgers.mat", {"a": a, "u": 0.5 * np.roll(a, 3, axis=1)})
    cfg = {"name": "foreign", "data": {"path": str(path), "format": "fno-mat", "n_train": 30, "n_test": 8,
                                       "subsample": 2},
           "model": {"name": "fno", "n_modes": [8], "hidden_channels": 8, "n_layers": 2},
           "train": {"epochs": 1, "batch_size": 8, "run_dir": str(tmp_path / "run")}}
    path_cfg = tmp_path / "foreign.yaml"
    path_cfg.write_text(yaml.safe_dump(cfg))
    training.train_and_evaluate(config.load(path_cfg))
    metrics = training.evaluate_run(tmp_path / "run")
    assert np.isfinite(metrics["rel_l2"]) and "grid 16" in capsys.readouterr().out
    with pytest.raises(UserError, match=r"has none .*fno-mat file.*--data"):
        training.evaluate_run(tmp_path / "run", resolution=64)


def test_format_names_agree_across_cli_config_and_readers():
    import typing

    from nopx.cli import FORMAT_CHOICES
    from nopx.config import DataConfig

    assert FORMAT_CHOICES == ("auto", *dg.FORMATS)
    assert typing.get_args(typing.get_type_hints(DataConfig)["format"]) == FORMAT_CHOICES
