"""Malformed datasets: each case damages a copy of a small valid dataset in one way.

Every case, given to ``nopx info``, must exit 2 with a message that names the file, the
problem and the fix, never a traceback (``tests/bad_inputs/test_bad_datasets.py``).
``python tests/bad_inputs/datasets/cases.py OUTDIR`` writes them all as files to look at.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import sys
from collections.abc import Callable

import h5py
import numpy as np

N_SAMPLES = 6
RECIPE = {"pde": "darcy", "seed": 1, "samples": N_SAMPLES, "out": "valid.h5", "grid": {"n": 8},
          "darcy": {"modes": 4}}


@dataclasses.dataclass(frozen=True)
class Case:
    """``damage(path)`` turns a copy of the valid dataset at ``path`` into this bad input.

    ``message`` is a regex the error must match; ``reader`` says whether opening the file
    and reading every sample (what training does) is refused too (NaN values are left to
    the training loader's own finiteness check).
    """

    name: str
    damage: Callable[[pathlib.Path], None]
    message: str
    reader: bool = True


def make_valid(path: pathlib.Path) -> pathlib.Path:
    """The valid dataset every case starts from."""
    from nopx.datagen import generate, recipe_from_mapping

    return generate(recipe_from_mapping(RECIPE, where="bad_inputs"), path)


def _write_bytes(data: bytes) -> Callable[[pathlib.Path], None]:
    return lambda path: path.write_bytes(data)


def _remove(path: pathlib.Path) -> None:
    path.unlink()


def _directory(path: pathlib.Path) -> None:
    path.unlink()
    path.mkdir()


def _foreign(path: pathlib.Path) -> None:
    with h5py.File(path, "w") as file:
        file["tensor"] = np.zeros((4, 8, 8))


def _set_attr(name: str, value: object) -> Callable[[pathlib.Path], None]:
    def damage(path: pathlib.Path) -> None:
        with h5py.File(path, "r+") as file:
            file.attrs[name] = value
    return damage


def _delete(name: str) -> Callable[[pathlib.Path], None]:
    def damage(path: pathlib.Path) -> None:
        with h5py.File(path, "r+") as file:
            if name in file.attrs:
                del file.attrs[name]
            else:
                del file[name]
    return damage


def _replace(name: str, shape: tuple[int, ...], dtype: str = "float32") -> Callable[[pathlib.Path], None]:
    def damage(path: pathlib.Path) -> None:
        with h5py.File(path, "r+") as file:
            del file[name]
            file.create_dataset(name, shape, dtype=dtype)
    return damage


def _not_done(sample: int, complete: bool) -> Callable[[pathlib.Path], None]:
    def damage(path: pathlib.Path) -> None:
        with h5py.File(path, "r+") as file:
            file["meta/done"][sample] = False
            file.attrs["complete"] = complete
    return damage


def _nan(name: str, sample: int) -> Callable[[pathlib.Path], None]:
    """NaN in a sample, checksum updated to match: only the finiteness check can tell."""
    def damage(path: pathlib.Path) -> None:
        import zlib

        with h5py.File(path, "r+") as file:
            data = file[name]
            value = data[sample]
            value.flat[3] = np.nan
            data[sample] = value
            if name != "meta/params":
                column = list(file.attrs["fields"]).index(name)
                file["meta/checksum"][sample, column] = zlib.crc32(np.ascontiguousarray(value))
    return damage


def _flip_chunk(name: str, sample: int) -> Callable[[pathlib.Path], None]:
    """Overwrite bytes of one sample's chunk in place, as a bad disk or copy would."""
    def damage(path: pathlib.Path) -> None:
        with h5py.File(path, "r") as file:
            offset = file[name].id.get_chunk_info(sample).byte_offset
        with path.open("r+b") as raw:
            raw.seek(offset + 16)
            raw.write(b"\x7f\x7f\x01\x02")
    return damage


def _truncate(path: pathlib.Path) -> None:
    with path.open("r+b") as raw:
        raw.truncate(path.stat().st_size // 2)


def _order_twice(path: pathlib.Path) -> None:
    with h5py.File(path, "r+") as file:
        file["meta/order"][1] = file["meta/order"][0]


CASES = [
    Case("not_hdf5", _write_bytes(b"pde: darcy\nsamples: 6\n"), r"not an HDF5 file"),
    Case("empty_file", _write_bytes(b""), r"not an HDF5 file"),
    Case("missing_file", _remove, r"no such dataset file; create it with `nopx datagen"),
    Case("directory", _directory, r"no such dataset file"),
    Case("foreign_hdf5", _foreign, r"an HDF5 file but not a nopx dataset .*nopx datagen"),
    Case("other_format", _set_attr("format", "pdebench"), r"not a nopx dataset"),
    Case("newer_format_version", _set_attr("format_version", 2), r"newer nopx \(format_version 2.*upgrade nopx"),
    Case("text_format_version", _set_attr("format_version", "one"), r"format_version is 'one'.*regenerate"),
    Case("zero_format_version", _set_attr("format_version", 0), r"format_version is 0.*regenerate"),
    Case("no_fields_attribute", _delete("fields"), r"'fields' attribute is missing.*regenerate"),
    Case("listed_field_missing", _set_attr("fields", ["a", "u", "w"]), r"lists w but holds no such dataset"),
    Case("no_meta_group", _delete("meta"), r"lists meta but holds no such group"),
    Case("mismatched_sample_counts", _replace("u", (N_SAMPLES - 1, 8, 8)),
         r"field 'u' has 5 samples but 'a' has 6.*regenerate"),
    Case("mismatched_grid", _replace("u", (N_SAMPLES, 4, 4)), r"field 'u' has sample shape \(4, 4\) but the grid"),
    Case("integer_field", _replace("a", (N_SAMPLES, 8, 8), "int32"), r"field 'a' is not a floating-point array"),
    Case("missing_meta_column", _delete("meta/done"), r"meta/done is missing, not one entry per sample"),
    Case("short_meta_column", _replace("meta/residual", (N_SAMPLES - 2,), "float64"),
         r"meta/residual is shaped \(4,\), not one entry per sample \(6\)"),
    Case("incomplete", _not_done(2, complete=False), r"incomplete dataset \(5 of 6 samples done\).*--resume"),
    Case("complete_flag_but_sample_missing", _not_done(4, complete=True), r"incomplete dataset \(5 of 6"),
    Case("nan_sample", _nan("u", 2), r"sample 2 of field 'u' holds NaN or Inf.*regenerate", reader=False),
    Case("nan_params", _nan("meta/params", 1), r"sample 1 of meta/params holds NaN or Inf", reader=False),
    Case("corrupted_chunk", _flip_chunk("a", 4), r"sample 4 of field 'a' is corrupted.*regenerate"),
    Case("truncated", _truncate, r"truncated: \d+ of its \d+ bytes are on disk.*regenerate"),
    Case("order_not_a_permutation", _order_twice, r"meta/order is not a permutation.*regenerate", reader=False),
]


def build(case: Case, valid: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """A copy of ``valid`` at ``out``, damaged by ``case``."""
    shutil.copyfile(valid, out)
    case.damage(out)
    return out


if __name__ == "__main__":
    target = pathlib.Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    valid = make_valid(target / "valid.h5")
    for case in CASES:
        print(build(case, valid, target / f"{case.name}.h5"))
