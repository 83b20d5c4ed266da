#!/usr/bin/env python3
"""`nopx datagen` end to end against expert pipelines: sampling, assembly, solve and file.

For each workload the same recipe is made, start to file, by:

* nopx: ``python -m nopx datagen --config R --set ...`` with its defaults (worker count,
  thread pinning) and the engine named in :data:`WORKLOADS`;
* the expert pipelines of ``bench/peers/datagen_baselines.py`` (PARDISO Cholesky or
  ``LDLᵀ`` with the analysis reused, SuperLU, pyamg AMG-CG with the hierarchy reused), each
  using both cores: one process with two threads, or two processes with one thread each on
  alternate samples (``--cores``), every variant that makes sense for the method.

Each run is a fresh set of processes timed from start to exit (imports included on both
sides), all storing float64. Runs rotate their order per workload and ``--repeats`` times;
the foreign CPU share while each ran is recorded (``contention.py``), and a run above
``--max-other-cpu`` is marked contended. Speed-up = the best baseline's wall time / nopx's.

Accuracy: ``--check`` of nopx's stored ``u`` (evenly spaced samples) are compared with an
independent direct solve of the same system (SuperLU in 2-D, PARDISO in 3-D): relative L2
error ≤ 1e-7 required.

Usage (repository root)::

    python bench/datagen.py                      # all workloads at full size -> RESULTS.md
    python bench/datagen.py --quick              # small grids, few samples, no file written
    python bench/datagen.py --workloads pwc,helmholtz --no-write
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from contention import run_children, wait_for_quiet
from generated import markers, write_block

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BASELINES = HERE / "peers" / "datagen_baselines.py"
RESULTS = HERE / "RESULTS.md"
TAG = "bench/datagen.py"
MARKS = markers(TAG)
TOLERANCE = 1e-7


@dataclasses.dataclass(frozen=True)
class Workload:
    recipe: str
    sets: tuple[str, ...]          # full size
    quick: tuple[str, ...]         # --quick
    nopx: tuple[str, ...]          # nopx's engine settings
    baselines: tuple[str, ...]
    indefinite: bool = False


WORKLOADS = {
    "pwc": Workload("experiments/datagen/darcy_pwc.yaml", ("grid.n=256", "samples=100"),
                    ("grid.n=64", "samples=24"), (), ("pardiso", "splu", "amg")),
    "smooth": Workload("experiments/datagen/darcy_smooth.yaml", ("grid.n=256", "samples=100"),
                       ("grid.n=64", "samples=24"), (), ("pardiso", "splu", "amg")),
    "helmholtz": Workload("experiments/datagen/helmholtz.yaml", ("grid.n=256", "samples=100"),
                          ("grid.n=64", "samples=24"), (), ("pardiso", "splu"), indefinite=True),
    # SuperLU is left out at 64³: about 5 s per system already at 32³ (DATAGEN.md).
    "darcy3d": Workload("experiments/datagen/darcy3d.yaml", ("grid.n=64", "samples=100"),
                        ("grid.n=16", "samples=8"), (), ("pardiso", "amg")),
}
# (label, processes, threads per process) per baseline: both cores used either way.
LAYOUTS = {"pardiso": (("2 threads", 1, 2), ("2 processes", 2, 1)),
           "splu": (("2 processes", 2, 1),), "amg": (("2 processes", 2, 1),)}


def _sets(values: tuple[str, ...]) -> list[str]:
    return [arg for v in values for arg in ("--set", v)]


def _threads_env(threads: int) -> dict[str, str]:
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                            "OPENBLAS_NUM_THREADS")}


def runs_of(name: str, w: Workload, sets: list[str], tmp: Path) -> list[tuple[str, list, dict]]:
    """``(label, argvs run side by side, environment)`` of every side of one workload."""
    recipe = str(REPO / w.recipe)
    runs = [("nopx datagen" + (f" ({', '.join(w.nopx)})" if w.nopx else ""),
             [[sys.executable, "-m", "nopx", "datagen", "--config", recipe, *sets, *_sets(w.nopx),
               "--out", str(tmp / f"{name}-nopx.h5")]], {})]
    for method in w.baselines:
        for label, processes, threads in LAYOUTS[method]:
            argvs = [[sys.executable, str(BASELINES), "--recipe", recipe, *sets, "--method", method,
                      "--part", f"{i}/{processes}", "--out", str(tmp / f"{name}-{method}-{i}.h5")]
                     + (["--indefinite"] if w.indefinite and method == "pardiso" else [])
                     for i in range(processes)]
            runs.append((f"{method} ({label})", argvs, _threads_env(threads)))
    return runs


def check_accuracy(w: Workload, sets: list[str], path: Path, count: int) -> float:
    """Largest relative L2 error of ``count`` stored ``u`` against an independent direct solve."""
    import scipy.sparse.linalg as spla

    from nopx.datagen import load_recipe, open_dataset

    recipe = load_recipe(REPO / w.recipe, [v for v in sets if v != "--set"])
    family = recipe.family()
    worst = 0.0
    with open_dataset(path) as data:
        for j in np.linspace(0, data.n_samples - 1, min(count, data.n_samples)).astype(int):
            problem = family.problem(recipe.first_index + int(j))
            if family.grid.ndim == 3:
                import pypardiso

                x = pypardiso.spsolve(problem.matrix.tocsr(), problem.rhs)
            else:
                x = spla.splu(problem.matrix.tocsc(), permc_spec="MMD_AT_PLUS_A").solve(problem.rhs)
            ref = family.fields_of(problem, x)["u"]
            stored = data.read_range("u", int(j), int(j) + 1)[0]
            worst = max(worst, float(np.linalg.norm(stored - ref) / np.linalg.norm(ref)))
    return worst


def measure(names: list[str], args: argparse.Namespace) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="nopx-datagen-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        for n, name in enumerate(names):
            w = WORKLOADS[name]
            sets = _sets((*(w.quick if args.quick else w.sets), "storage.dtype=float64"))
            runs = runs_of(name, w, sets, tmp)
            rows = {label: {"label": label, "walls": [], "shares": [], "error": None}
                    for label, _, _ in runs}
            for repeat in range(args.repeats):
                shift = (n + repeat) % len(runs)
                for label, argvs, env in runs[shift:] + runs[:shift]:
                    if rows[label]["error"]:
                        continue
                    for argv in argvs:  # a run writes new files
                        Path(argv[argv.index("--out") + 1]).unlink(missing_ok=True)
                    wait_for_quiet(args.quiet_wait, args.max_other_cpu)
                    procs, share, wall = run_children(argvs, env, args.timeout)
                    failed = [p for p in procs if p.returncode != 0]
                    if failed:
                        rows[label]["error"] = (failed[0].stderr.strip().splitlines() or ["?"])[-1]
                    rows[label]["walls"].append(wall)
                    rows[label]["shares"].append(share)
                    print(f"[{name}] {label}: {wall:.1f} s, other CPU "
                          f"{'n/a' if share is None else f'{share:.0%}'}"
                          + (f", FAILED: {rows[label]['error']}" if failed else ""),
                          file=sys.stderr, flush=True)
            nopx_file = tmp / f"{name}-nopx.h5"
            accuracy = (check_accuracy(w, sets, nopx_file, args.check)
                        if nopx_file.exists() else None)
            results.append({"workload": name, "sets": [v for v in sets if v != "--set"],
                            "rows": list(rows.values()), "accuracy": accuracy})
    return results


def markdown(results: list[dict], max_share: float) -> str:
    lines = []
    for res in results:
        rows = [r for r in res["rows"] if not r["error"]]
        nopx = next((r for r in rows if r["label"].startswith("nopx")), None)
        baselines = [r for r in rows if not r["label"].startswith("nopx")]
        best = min(baselines, key=lambda r: min(r["walls"])) if baselines else None
        acc = res["accuracy"]
        lines += ["", f"### {res['workload']}: `{' '.join(res['sets'])}`", "",
                  (f"Best baseline: **{best['label']}**; nopx speed-up "
                   f"**{min(best['walls']) / min(nopx['walls']):.2f}x** end to end" if best and nopx
                   else "No complete comparison")
                  + f"; accuracy: max rel. L2 error of nopx's stored u vs a direct solve "
                  f"{'—' if acc is None else f'{acc:.1e}'} "
                  f"({'ok' if acc is not None and acc <= TOLERANCE else 'NOT ok'} at ≤ 1e-7)", "",
                  "| side | wall s (best of runs) | all runs | other CPU | contended |",
                  "|---|---|---|---|---|"]
        for r in res["rows"]:
            if r["error"]:
                lines.append(f"| {r['label']} | failed: {r['error']} | | | |")
                continue
            shares = [s for s in r["shares"] if s is not None]
            lines.append(f"| {r['label']} | {min(r['walls']):.1f} | "
                         f"{', '.join(f'{v:.1f}' for v in r['walls'])} | "
                         f"{', '.join(f'{s:.0%}' for s in shares) or 'n/a'} | "
                         f"{'**yes**' if any(s > max_share for s in shares) else 'no'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--quick", action="store_true",
                        help="small grids and few samples, no waiting, no file written")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--check", type=int, default=20, help="stored samples checked (accuracy)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds after which a run is stopped and reported as such")
    parser.add_argument("--max-other-cpu", type=float, default=0.05)
    parser.add_argument("--quiet-wait", type=float, default=120.0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.quiet_wait, args.no_write, args.check = 0.0, True, min(args.check, 4)
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    if unknown := [n for n in names if n not in WORKLOADS]:
        raise SystemExit(f"unknown workload(s) {unknown}; known: {sorted(WORKLOADS)}")
    os.chdir(REPO)  # the recipes' relative paths and `python -m nopx` resolve from here
    results = measure(names, args)
    body = markdown(results, args.max_other_cpu)
    print(body)
    if not args.no_write:
        command = " ".join(shlex.quote(a) for a in ["python", "bench/datagen.py", *sys.argv[1:]])
        write_block(RESULTS, TAG, "\n".join([
            MARKS[0], "## Datagen end to end: `nopx datagen` vs expert pipelines (`bench/datagen.py`)",
            "", f"- Date: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {os.cpu_count()} CPUs; "
            f"command `{command}`",
            "- Wall time from process start to exit, file written (float64), both cores used by "
            "every side; **rows marked contended had other processes using CPU meanwhile**.",
            body, "", MARKS[1]]))
    return 0 if all(r["accuracy"] is not None and r["accuracy"] <= TOLERANCE for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
