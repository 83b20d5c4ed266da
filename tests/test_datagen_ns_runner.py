"""Navier–Stokes datasets: the recipe, the file layout, SIGKILL + resume, the CLI."""

import pathlib
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

from helpers import run_nopx
from nopx.datagen import generate, merge, open_dataset, recipe_from_mapping
from nopx.datagen.navier_stokes import forcing_field, simulate
from nopx.datagen.periodic_grf import PeriodicGRF
from nopx.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _mapping(tmp_path, **ns):
    return {"pde": "navier_stokes", "seed": 3, "samples": 5, "out": str(tmp_path / "ns.h5"),
            "grid": {"n": 32, "subsample": 2},
            "navier_stokes": {"dt": 0.01, "t_end": 1.0, "record_every": 0.25, "batch": 2, "modes": 8, **ns}}


def _arrays(path):
    with open_dataset(path) as data:
        return data.read_range("w", 0, data.n_samples), data.meta("params")


def test_file_layout_and_time_convention(tmp_path):
    recipe = recipe_from_mapping(_mapping(tmp_path), where="test")
    path = generate(recipe)
    with open_dataset(path) as data:
        w = data.read_range("w", 0, 5)
        assert data.fields == ("w",) and w.shape == (5, 5, 16, 16) and w.dtype == np.float32
        assert data.attrs["times"] == [0.0, 0.25, 0.5, 0.75, 1.0]
        assert data.attrs["grid_origin"] == [0.0, 0.0] and data.attrs["grid_spacing"] == [1 / 16, 1 / 16]
        assert data.attrs["solve_shape"] == [32, 32]
        assert "solver" not in yaml.safe_load(data.attrs["recipe"])
        assert (data.meta("iterations") == 100).all() and (data.meta("residual") == 0).all()
        assert (data.meta("seconds") > 0).all()
        params = data.meta("params")
    grf = PeriodicGRF(modes=8)
    for i in (0, 4):
        xi = grf.coefficients(3, i)
        np.testing.assert_array_equal(params[i], xi.ravel().astype(np.float32))
        # w[:, 0] is the initial condition; later records are the trajectory at t = 0.25, 0.5, ...
        np.testing.assert_array_equal(w[i, 0], grf.synthesize(xi, 32)[::2, ::2].astype(np.float32))
        expected = simulate(grf.synthesize(xi, 32)[None], nu=1e-3, dt=0.01, steps_per_record=25, records=4,
                            forcing=forcing_field("fno", 32), subsample=2)[0]
        np.testing.assert_array_equal(w[i], expected.astype(np.float32))


def test_samples_do_not_depend_on_the_batch(tmp_path):
    one = generate(recipe_from_mapping(_mapping(tmp_path, batch=1, dtype="float32"), where="a"), tmp_path / "a.h5")
    three = generate(recipe_from_mapping(_mapping(tmp_path, batch=3, dtype="float32"), where="b"), tmp_path / "b.h5")
    for a, b in zip(_arrays(one), _arrays(three), strict=True):
        np.testing.assert_array_equal(a, b)


def test_shards_merge_into_the_full_dataset(tmp_path):
    recipe = recipe_from_mapping(_mapping(tmp_path), where="test")
    parts = [generate(recipe, shard=(i, 2)) for i in (1, 0)]
    merged = merge(parts, tmp_path / "merged.h5")
    for a, b in zip(_arrays(generate(recipe)), _arrays(merged), strict=True):
        np.testing.assert_array_equal(a, b)
    with open_dataset(merged) as data:
        assert data.attrs["times"] == [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize(("change", "message"), [
    ({"solver": {"method": "direct"}}, "'navier_stokes' needs no linear solver; remove the 'solver:' section"),
    ({"grid": {"n": 32, "subsample": 3}}, r"grid: subsample: must divide n"),
    ({"grid": {"n": 33}}, r"grid\.n: the spectral solver needs an even number"),
    ({"navier_stokes": {"dt": 0.03, "record_every": 0.25}}, r"navier_stokes\.record_every: record_every / dt"),
    ({"navier_stokes": {"t_end": 1.1, "record_every": 0.25}}, r"navier_stokes\.t_end: t_end / record_every"),
    ({"navier_stokes": {"scheme": "rk4"}}, r"navier_stokes\.scheme: 'rk4' is not one of"),
])
def test_recipe_mistakes_are_user_errors(tmp_path, change, message):
    with pytest.raises(UserError, match=message):
        recipe = recipe_from_mapping({**_mapping(tmp_path), **change}, where="r.yaml")
        recipe.family()


def test_blow_up_is_an_error_not_data(tmp_path):
    recipe = recipe_from_mapping(_mapping(tmp_path, dt=0.5, record_every=0.5, t_end=25.0, forcing_amplitude=10.0),
                                 where="r.yaml")
    with pytest.raises(UserError, match=r"sample 0 became non-finite .* reduce navier_stokes\.dt"):
        generate(recipe)
    with open_dataset(tmp_path / "ns.h5", require_complete=False) as data:
        assert not data.meta("done").any()


KILLED_RUN = """
import time
import nopx.datagen as dg

recipe = dg.recipe_from_mapping({recipe!r}, where="killed")

def progress(done, total):
    print(done, flush=True)
    time.sleep(0.1)

dg.generate(recipe, {out!r}, resume=True, progress=progress)
"""


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    recipe = recipe_from_mapping({**_mapping(tmp_path, batch=3), "samples": 24}, where="test")
    killed = tmp_path / "killed.h5"
    script = KILLED_RUN.format(recipe=recipe.to_mapping(), out=str(killed))
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if int(line) >= 6:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    with open_dataset(killed, require_complete=False) as data:
        assert 6 <= data.meta("done").sum() < 24
    generate(recipe, killed, resume=True)
    reference = generate(recipe, tmp_path / "reference.h5")
    for a, b in zip(_arrays(reference), _arrays(killed), strict=True):
        np.testing.assert_array_equal(a, b)
    with open_dataset(killed) as data:
        assert sorted(data.meta("order")) == list(range(24))


def test_cli_runs_the_quick_recipe_and_info_reads_it(tmp_path):
    out = tmp_path / "quick.h5"
    overrides = ["samples=3", "grid.n=32", "navier_stokes.t_end=2", "navier_stokes.batch=2"]
    args = [item for o in overrides for item in ("--set", o)]
    result = run_nopx("datagen", "--config", str(ROOT / "experiments/datagen/ns_quick.yaml"), *args, "--out", str(out))
    assert result.returncode == 0, result.stderr
    again = run_nopx("datagen", "--config", str(ROOT / "experiments/datagen/ns_quick.yaml"), *args,
                     "--out", str(out), "--resume")
    assert again.returncode == 0, again.stderr
    shown = run_nopx("info", str(out))
    assert shown.returncode == 0, shown.stderr
    assert "pde navier_stokes" in shown.stdout and "w      (3, 3, 32, 32)  float32" in shown.stdout


def test_paper_recipe_parses_to_the_fno_setting():
    recipe = recipe_from_mapping(yaml.safe_load((ROOT / "experiments/datagen/ns_fno_nu1e-3.yaml").read_text()),
                                 where="paper")
    family = recipe.family()
    assert family.grid.n == 256 and family.grid.stored_shape == (64, 64)
    assert family.stored_shapes == {"w": (51, 64, 64)} and recipe.samples == 1200
    ns = recipe.physics
    assert (ns.nu, ns.dt, ns.t_end, ns.record_every, ns.scheme) == (1e-3, 1e-4, 50.0, 1.0, "cn_euler")
