"""``nopx datagen --executor ray``: the chains as Ray tasks on a local Ray instance.

The Ray run is skipped unless Ray is installed (``pip install -e ".[ray]"``).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from nopx.datagen import generate, open_dataset, recipe_from_mapping
from nopx.errors import UserError


def _content(path):
    """Every field, the params and solver statistics (not ``order``/``seconds``/``created``)."""
    with open_dataset(path) as data:
        out = {name: data.read_range(name, 0, data.n_samples) for name in data.fields}
        out.update({name: data.meta(name) for name in ("params", "residual", "iterations", "matvecs")})
        return out, data.verify()


def test_a_ray_run_writes_the_single_process_file_bit_for_bit(tmp_path):
    ray = pytest.importorskip("ray")
    # GCRO-DR carries a recycled space along each chain: equal bits need equal chains.
    recipe = recipe_from_mapping({"pde": "darcy", "seed": 2, "samples": 14, "out": str(tmp_path / "d.h5"),
                                  "grid": {"n": 16}, "darcy": {"modes": 8, "coefficient": "smooth"},
                                  "solver": {"method": "gcrodr", "options": {"m": 20, "k": 6}, "chain": 4}},
                                 where="test")
    single, single_hashes = _content(generate(recipe, tmp_path / "single.h5"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray, ray_hashes = _content(generate(recipe, tmp_path / "ray.h5", executor="ray"))
    finally:
        ray.shutdown()
    assert ray_hashes == single_hashes
    for name, values in single.items():
        np.testing.assert_array_equal(values, on_ray[name], err_msg=name)
    assert (single["iterations"] > 0).all()
    with pytest.raises(UserError, match="--executor ray"):
        generate(recipe, tmp_path / "other.h5", address="auto")


def test_without_ray_the_executor_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    recipe = recipe_from_mapping({"pde": "darcy", "samples": 2, "out": str(tmp_path / "d.h5"),
                                  "grid": {"n": 8}, "darcy": {"modes": 4}}, where="test")
    with pytest.raises(UserError, match=r"Ray is not installed; install it with pip install"):
        generate(recipe, executor="ray")
    assert not (tmp_path / "d.h5").exists()
