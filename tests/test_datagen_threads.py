"""How `nopx datagen` uses the machine: default worker count and BLAS threads per worker."""

from __future__ import annotations

import numpy as np

from nopx.datagen import blas_threads as bt
from nopx.datagen import runner
from nopx.datagen.recipe import recipe_from_mapping


def _family(n: int):
    return recipe_from_mapping({"pde": "darcy", "samples": 4, "out": "x.h5", "grid": {"n": n}},
                               where="test").family()


def test_small_jobs_run_in_process_and_big_ones_use_every_core(monkeypatch):
    monkeypatch.setattr(runner, "usable_cores", lambda: 2)
    assert runner.default_workers(_family(16), samples=24, chains=4) == 1
    assert runner.default_workers(_family(256), samples=100, chains=4) == 2
    assert runner.default_workers(_family(256), samples=100, chains=1) == 1  # one chain: one worker


def test_blas_threads_pins_the_loaded_libraries_and_restores_them():
    np.dot(np.ones(4), np.ones(4))  # numpy's OpenBLAS is loaded
    controls = bt._controls(tuple(bt._mapped_libraries()))
    if not controls:  # another BLAS or OS: nothing to pin
        return
    before = [get() for _, get in controls]
    with bt.blas_threads(1):
        assert all(get() == 1 for _, get in controls)
    assert [get() for _, get in controls] == before
