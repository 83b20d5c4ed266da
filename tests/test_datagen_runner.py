"""The datagen runner: generate, resume after SIGKILL, workers, shards, merge, info, solver misses.

Determinism: the same recipe and seed give bit-identical datasets (:func:`_arrays`) across
runs, ``workers`` and ``--shard`` splits merged.
"""

import dataclasses
import re
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
import yaml

from helpers import run_nopx
from nopx.datagen import generate, info, merge, open_dataset, recipe_from_mapping, register_solver
from nopx.datagen.solvers import DirectSolver, SolveStats
from nopx.errors import UserError


def _recipe(tmp_path, **changes):
    mapping = {"pde": "darcy", "seed": 5, "samples": 12, "out": str(tmp_path / "d.h5"),
               "grid": {"n": 16}, "darcy": {"modes": 8}}
    for key, value in changes.items():
        section, _, name = key.rpartition("__")
        (mapping.setdefault(section, {}) if section else mapping)[name] = value
    return recipe_from_mapping(mapping, where="test")


def _arrays(path):
    """What the same recipe and seed must reproduce bit for bit: every field, the params, the
    solver statistics and the per-field SHA-256 (not ``created``, ``meta/seconds``, ``meta/order``)."""
    with open_dataset(path) as data:
        out = {name: data.read_range(name, 0, data.n_samples) for name in data.fields}
        out.update({name: data.meta(name) for name in ("params", "residual", "iterations", "matvecs", "retried")})
        out.update({f"sha256 {name}": digest for name, digest in data.verify().items()})
        return out


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_generate_writes_a_complete_verified_file(tmp_path):
    recipe = _recipe(tmp_path)
    seen = []
    path = generate(recipe, progress=lambda done, total: seen.append((done, total)))
    assert path == tmp_path / "d.h5"
    assert seen[0] == (0, 12) and seen[-1] == (12, 12)
    with open_dataset(path) as data:
        assert data.fields == ("a", "u") and data.n_samples == 12 and data.spatial_shape == (16, 16)
        assert data.dtype("u") == np.float32
        assert data.attrs["pde"] == "darcy" and data.attrs["seed"] == 5 and data.attrs["first_index"] == 0
        assert yaml.safe_load(data.attrs["recipe"]) == recipe.to_mapping()
        assert data.attrs["grid_shape"] == [16, 16] and data.attrs["grid_spacing"] == [1 / 16, 1 / 16]
        assert data.meta("done").all() and (data.meta("residual") <= 1e-8).all()
        assert sorted(data.meta("order")) == list(range(12))
        assert (data.meta("seconds") > 0).all()
        # Sample i is the family's problem for global index i, solved.
        family = recipe.family()
        np.testing.assert_array_equal(data.read("a", 7), family.problem(7).inputs["a"])
        np.testing.assert_array_equal(data.meta("params")[7], family.problem(7).params.astype(np.float32))
        assert data.read("u", 7).min() > 0


def test_first_index_and_subsample(tmp_path):
    full = _arrays(generate(_recipe(tmp_path, samples=6, grid__n=21, out=str(tmp_path / "full.h5"))))
    part = generate(_recipe(tmp_path, samples=2, first_index=3, grid__n=21, grid__subsample=5,
                            storage__dtype="float64", out=str(tmp_path / "sub.h5")))
    with open_dataset(part) as data:
        assert data.spatial_shape == (5, 5) and data.dtype("a") == np.float64
        assert data.attrs["grid_origin"] == [0.5 / 21] * 2 and data.attrs["solve_shape"] == [21, 21]
        np.testing.assert_array_equal(data.read_range("a", 0, 2), full["a"][3:5, ::5, ::5])
        np.testing.assert_allclose(data.read_range("u", 0, 2), full["u"][3:5, ::5, ::5], rtol=1e-6)


def test_existing_file_needs_resume_and_a_matching_recipe(tmp_path):
    recipe = _recipe(tmp_path)
    path = generate(recipe)
    with pytest.raises(UserError, match=r"d\.h5: exists; pass --resume to complete it, or delete it"):
        generate(recipe)
    assert generate(recipe, resume=True) == path  # already complete: nothing to do
    message = r"d\.h5: made by a different recipe \(darcy\.high is 12\.0 in the file, 10\.0 now\)"
    with pytest.raises(UserError, match=message):
        generate(_recipe(tmp_path, darcy__high=10.0), resume=True)
    with pytest.raises(UserError, match="--shard"):
        generate(recipe, path, resume=True, shard=(0, 2))


def test_residual_miss_is_an_error_not_data(tmp_path):
    message = (r"d\.h5: sample \d+: relative residual .* misses solver\.rtol 1\.0e-30; it was not stored\. "
               r".*--set solver\.on_miss=direct")
    with pytest.raises(UserError, match=message):
        generate(_recipe(tmp_path, solver__rtol=1e-30))
    with open_dataset(tmp_path / "d.h5", require_complete=False) as data:
        assert not data.meta("done").any()


def test_workers_match_a_single_process(tmp_path):
    one = _arrays(generate(_recipe(tmp_path, out=str(tmp_path / "one.h5"))))
    two = generate(_recipe(tmp_path, out=str(tmp_path / "two.h5")), workers=2)
    _assert_same(one, _arrays(two))
    with open_dataset(two) as data:
        assert sorted(data.meta("order")) == list(range(12))


def test_shards_merge_into_the_full_dataset(tmp_path):
    recipe = _recipe(tmp_path, samples=7)
    parts = [generate(recipe, shard=(i, 3)) for i in (2, 0, 1)]
    assert parts[0] == tmp_path / "d.shard2of3.h5"
    with open_dataset(parts[0]) as data:
        assert data.n_samples == 3 and data.attrs["first_index"] == 4 and data.attrs["shard_count"] == 3
    merged = merge(parts, tmp_path / "merged.h5")
    full = generate(recipe, tmp_path / "full.h5")
    _assert_same(_arrays(full), _arrays(merged))
    with pytest.raises(UserError, match="exactly once"):
        merge(parts[:2], tmp_path / "other.h5")
    with pytest.raises(UserError, match="not a shard"):
        merge([full], tmp_path / "other.h5")
    with pytest.raises(UserError, match=r"--shard 3/3"):
        generate(recipe, shard=(3, 3))


def test_info_summarises_the_file(tmp_path):
    path = generate(_recipe(tmp_path))
    text = info(path)
    for expected in ("pde darcy, seed 5", "complete: 12/12 samples done", "a      (12, 16, 16)  float32",
                     "params (12, 64)", "residual   max", "recipe:", "    darcy:"):
        assert expected in text, expected


KILLED_RUN = """
import sys, time
import nopx.datagen as dg

recipe = dg.recipe_from_mapping({recipe!r}, where="killed")

def progress(done, total):
    print(done, flush=True)
    time.sleep(0.02)

dg.generate(recipe, {out!r}, resume=True, progress=progress)
"""


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    recipe = _recipe(tmp_path, samples=200, grid__n=32)
    killed = tmp_path / "killed.h5"
    script = KILLED_RUN.format(recipe=recipe.to_mapping(), out=str(killed))
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if int(line) >= 40:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    with open_dataset(killed, require_complete=False) as data:
        done = data.meta("done")
        assert 40 <= done.sum() < 200
    with pytest.raises(UserError, match="incomplete"):
        open_dataset(killed)

    generate(recipe, killed, resume=True)
    reference = generate(recipe, tmp_path / "reference.h5")
    _assert_same(_arrays(reference), _arrays(killed))
    with open_dataset(killed) as data:
        assert data.meta("done").all()
        assert sorted(data.meta("order")) == list(range(200))  # nothing lost, nothing twice


def test_resume_finishes_a_file_killed_after_its_last_write(tmp_path):
    recipe = _recipe(tmp_path)
    path = generate(recipe, resume=True)  # resume on a missing file simply starts it
    with h5py.File(path, "r+") as file:
        file.attrs["complete"] = False
    seen = []
    generate(recipe, resume=True, progress=lambda done, total: seen.append(done))
    assert seen == [12]
    with open_dataset(path) as data:
        assert data.complete


def test_sorted_chains_with_a_recycling_engine_resume_exactly(tmp_path):
    """Killed mid-run and resumed, a sorted, chained GCRO-DR run equals an uninterrupted one bit for bit."""
    recipe = _recipe(tmp_path, samples=96, grid__n=16, darcy__coefficient="smooth",
                     solver__method="gcrodr", solver__options={"m": 20, "k": 8}, solver__chain=12)
    killed = tmp_path / "killed.h5"
    script = KILLED_RUN.format(recipe=recipe.to_mapping(), out=str(killed))
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if int(line) >= 24:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    with open_dataset(killed, require_complete=False) as data:
        assert 24 <= data.meta("done").sum() < 96
    generate(recipe, killed, resume=True, workers=2)
    reference = generate(recipe, tmp_path / "reference.h5")
    _assert_same(_arrays(reference), _arrays(killed))
    with open_dataset(reference) as data:
        order = np.argsort(data.meta("order"))
        params = data.meta("params")[order]
        # Written chain by chain in nearest-neighbour order: consecutive samples are close.
        assert np.linalg.norm(np.diff(params, axis=0), axis=1).mean() < 0.6 * np.linalg.norm(
            np.diff(data.meta("params"), axis=0), axis=1).mean()
        assert (data.meta("matvecs") > 0).all() and not data.meta("retried").any()


def test_missed_samples_are_retried_directly_and_flagged(tmp_path):
    recipe = _recipe(tmp_path, samples=6, solver__method="gcrodr", solver__options={"max_matvecs": 5},
                     solver__on_miss="direct")
    with open_dataset(generate(recipe)) as data:
        assert data.meta("retried").all() and (data.meta("residual") <= 1e-8).all()
    assert "retried 6" in info(tmp_path / "d.h5")


def test_time_dependent_family_stores_trajectories(tmp_path):
    recipe = recipe_from_mapping({"pde": "heat", "samples": 3, "out": str(tmp_path / "h.h5"), "grid": {"n": 8},
                                  "heat": {"modes": 4, "steps": 6, "every": 3},
                                  "solver": {"method": "gcrodr", "options": {"m": 10, "k": 3}}}, where="t")
    with open_dataset(generate(recipe)) as data:
        assert data.field_shape("u") == (3, 8, 8) and data.field_shape("kappa") == (8, 8)
        assert data.attrs["times"] == pytest.approx([0.0, 0.003, 0.006])
        u = data.read("u", 1)
        assert np.abs(u[-1]).max() < np.abs(u[0]).max()  # it diffuses


@dataclasses.dataclass(frozen=True)
class _BreaksDown:
    """Direct solves, but every chain's system ``fail_at`` breaks the engine (as a singular ILU
    factor does) or, with ``nan``, comes back NaN."""

    fail_at: int = 2
    nan: bool = False

    def solve(self, systems):
        for count, (matrix, rhs) in enumerate(systems):
            if count != self.fail_at:
                yield from DirectSolver().solve([(matrix, rhs)])
            elif self.nan:
                x = np.full_like(rhs, np.nan)
                yield x, SolveStats.measure(matrix, x, rhs, start=time.perf_counter())
            else:
                raise RuntimeError("Factor is exactly singular")


register_solver("test_breakdown", _BreaksDown)


def _breaking(tmp_path, on_miss="error", **options):
    return _recipe(tmp_path, solver__method="test_breakdown", solver__options=options, solver__chain=4,
                   solver__sort=False, solver__on_miss=on_miss)


def test_an_engine_breakdown_or_nan_is_an_error_naming_the_sample(tmp_path):
    message = (r"d\.h5: sample 2: the engine failed \(RuntimeError: Factor is exactly singular\), so it misses "
               r"solver\.rtol 1\.0e-08; it was not stored\. .*--set solver\.on_miss=direct.* written so far are kept")
    with pytest.raises(UserError, match=message):
        generate(_breaking(tmp_path))
    (tmp_path / "d.h5").unlink()
    with pytest.raises(UserError, match=r"sample 2: relative residual inf misses solver\.rtol"):
        generate(_breaking(tmp_path, nan=True))


def test_the_cli_reports_a_miss_as_exit_2_with_the_fix(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(tmp_path, samples=3, grid__n=8, darcy__modes=4).to_mapping()))
    result = run_nopx("datagen", "--config", str(recipe), "--set", "solver.rtol=1e-30")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert re.search(r"d\.h5: sample \d: relative residual \S+ misses solver\.rtol 1\.0e-30; it was not stored\. "
                     r".*--set solver\.on_miss=direct", result.stderr), result.stderr


def test_on_miss_direct_redoes_the_failed_samples_and_may_be_chosen_on_resume(tmp_path):
    reference = _arrays(generate(_recipe(tmp_path, out=str(tmp_path / "reference.h5"))))
    assert not reference.pop("retried").any()
    for options in ({}, {"nan": True}):
        out = tmp_path / f"direct{len(options)}.h5"
        with pytest.raises(UserError):
            generate(_breaking(tmp_path, **options), out)
        generate(_breaking(tmp_path, on_miss="direct", **options), out, resume=True)
        redone = _arrays(out)
        assert list(np.flatnonzero(redone.pop("retried"))) == [2, 6, 10]
        _assert_same(reference, redone)


def _hash_lines(path):
    return re.findall(r"^    (\w+) +([0-9a-f]{64})$", info(path), flags=re.MULTILINE)


def test_a_chain_carrying_engine_repeats_bit_for_bit_in_other_processes(tmp_path):
    """GCRO-DR carries a recycled space along each chain: the chains, not the processes, fix the bits."""
    recipe = _recipe(tmp_path, samples=18, darcy__coefficient="smooth", solver__method="gcrodr",
                     solver__options={"m": 20, "k": 6}, solver__chain=5)
    first = _arrays(generate(recipe, tmp_path / "first.h5"))
    _assert_same(first, _arrays(generate(recipe, tmp_path / "workers.h5", workers=2)))
    assert (first["iterations"] > 0).all()


def test_info_shows_equal_hashes_for_equal_datasets_only(tmp_path):
    recipe = _recipe(tmp_path, samples=7)
    merged = merge([generate(recipe, shard=(i, 3)) for i in range(3)], tmp_path / "merged.h5")
    hashes = _hash_lines(generate(recipe, tmp_path / "whole.h5"))
    assert [name for name, _ in hashes] == ["a", "u", "params"] and hashes == _hash_lines(merged)
    other = _hash_lines(generate(_recipe(tmp_path, samples=7, seed=6), tmp_path / "other.h5"))
    assert all(x != y for x, y in zip(hashes, other, strict=True))


def test_a_compiled_engine_writes_the_same_file_from_every_process(tmp_path):
    """gmg: the workers start after this process loaded its kernels, and this process solves chains too."""
    recipe = _recipe(tmp_path, samples=10, grid__n=32, solver__method="gmg", solver__chain=3)
    one = _arrays(generate(recipe, tmp_path / "one.h5"))
    _assert_same(one, _arrays(generate(recipe, tmp_path / "two.h5", workers=2)))
    assert (one["iterations"] > 0).all()
