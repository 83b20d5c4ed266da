"""Malformed datasets (``datasets/cases.py``): ``nopx info`` exits 2 naming the problem and the fix.

Training reads through the same reader: opening each file and reading every sample is
refused too (NaN values aside: the training loader checks finiteness itself).
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys

import pytest

from helpers import run_nopx
from nopx.cli import main
from nopx.datagen import open_dataset
from nopx.errors import UserError

_SPEC = importlib.util.spec_from_file_location("bad_dataset_cases", pathlib.Path(__file__).parent / "datasets/cases.py")
cases = sys.modules[_SPEC.name] = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(cases)


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> pathlib.Path:
    return cases.make_valid(tmp_path_factory.mktemp("valid") / "valid.h5")


def test_the_valid_dataset_passes(valid, capsys):
    assert main(["info", str(valid)]) == 0
    assert "complete: 6/6 samples done" in capsys.readouterr().out


def test_there_are_enough_cases():
    assert len(cases.CASES) >= 12 and len({case.name for case in cases.CASES}) == len(cases.CASES)


@pytest.mark.parametrize("case", cases.CASES, ids=lambda case: case.name)
def test_info_refuses_it_with_a_clear_message(case, valid, tmp_path, capsys):
    path = cases.build(case, valid, tmp_path / f"{case.name}.h5")
    assert main(["info", str(path)]) == 2
    out, error = capsys.readouterr()
    assert ("INCOMPLETE" in out) == case.name.startswith(("incomplete", "complete_flag"))  # summary first
    assert error.startswith(f"nopx info: error: {path}") and "Traceback" not in error
    assert re.search(case.message, error), error


@pytest.mark.parametrize("case", [c for c in cases.CASES if c.reader], ids=lambda case: case.name)
def test_the_training_reader_refuses_it(case, valid, tmp_path):
    path = cases.build(case, valid, tmp_path / f"{case.name}.h5")
    with pytest.raises(UserError, match=case.message):
        with open_dataset(path) as data:
            for field in data.fields:
                data.read_range(field, 0, data.n_samples)


def test_the_real_command_prints_no_traceback(valid, tmp_path):
    for name in ("corrupted_chunk", "truncated"):
        [case] = [c for c in cases.CASES if c.name == name]
        result = run_nopx("info", str(cases.build(case, valid, tmp_path / f"{name}.h5")))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert name.split("_")[0] in result.stderr
