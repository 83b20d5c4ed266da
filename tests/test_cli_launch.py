"""``nopx eval`` and ``nopx refine`` started as several processes (``srun`` with several
tasks, a TPU VM slice): one process runs, or none, never all writing at once."""

from __future__ import annotations

import pathlib

from helpers import run_nopx

SLURM = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}


def test_slurm_tasks_after_the_first_exit_at_once_and_task_0_runs(tmp_path):
    missing = tmp_path / "no-run"   # task 0 runs and says so; the others never look at it
    eval_args = ("eval", "--run", str(missing))
    refine_args = ("refine", "--run", str(missing), "--data", str(tmp_path / "d.h5"),
                   "--out", str(tmp_path / "refined.h5"))
    for args in (eval_args, refine_args):
        other = run_nopx(*args, env={**SLURM, "SLURM_PROCID": "3"})
        assert other.returncode == 0, other.stderr
        assert f"nopx {args[0]}: Slurm task 3 of 4" in other.stderr and not other.stdout
        first = run_nopx(*args, env={**SLURM, "SLURM_PROCID": "0"})
        assert first.returncode == 2, first.stderr
        assert "started as 4 Slurm tasks: this one (task 0) runs alone" in first.stderr
        assert "not a run directory" in first.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_tpu_slice_is_refused_with_the_fix(tmp_path: pathlib.Path):
    result = run_nopx("eval", "--run", str(tmp_path),
                      env={"TPU_WORKER_HOSTNAMES": "t0,t1", "SLURM_NTASKS": "1"})
    assert result.returncode == 2
    assert ("nopx eval: error: started on each of the 2 hosts of a TPU VM slice"
            in result.stderr)
    assert "run nopx eval as one process" in result.stderr and "Traceback" not in result.stderr
