#!/usr/bin/env python
"""Solver time only: datagen engines vs baselines on the same systems (goals G1-G4); end to end is bench/datagen.py.

Every goal builds one list of systems with a nopx family, then solves it with each method,
interleaved chain by chain (rotating who goes first), single-threaded (BLAS/MKL pinned to
one thread; both sides would scale alike over ``--workers``). Assembly is excluded for all
methods alike; nopx's chain planning (features + sort) is charged to nopx. nopx methods run
as the runner does: chains of ``--chain`` sorted samples, a fresh engine call per chain.

  G1  2-D Darcy (pwc, smooth), N=256: nopx `gmg` (geometric multigrid, unsorted chains, as
      the recipes run it), `pardiso` (Cholesky, analysis reused per chain) and `amg`
      (hierarchy refitted per chain) vs splu+MMD, AMG-CG (pyamg), ILU-GMRES, pypardiso
      (plain, analysis every system).
  G2  indefinite Helmholtz, N=256: nopx `gmg`, `pardiso` (LDLᵀ, analysis reused),
      `gcrodr`+ILU (recycled) vs splu, ILU-GMRES, pypardiso.
  G3  3-D Darcy pwc 64³: nopx `gmg` and `amg` (refitted hierarchy, float32 V-cycle) vs
      AMG-CG (pyamg, best of its own solve and SciPy CG). splu is not run at 64³ (5 s per
      system at 32³).
  G4  SKR parity, Darcy n = 100² (lognormal, like SKR's exp(GRF)): GCRO-DR(40,20)+Jacobi,
      sorted, vs GMRES(40)+Jacobi (the same code with k = 0), unsorted, no recycling.

Accuracy: max relative error against a direct (or, at 64³, a 1e-12 AMG-CG) solution,
required ≤ 1e-7 at rtol 1e-8. A method over its --budget seconds in a goal stops; its total
is extrapolated and flagged "est".

Usage:  python bench/datagen_solvers.py [--goals G1 G2 G3 G4] [--count 100] [--count3d 20] [--out F]
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402

import numpy as np  # noqa: E402
import pyamg  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import scipy.sparse.linalg as spla  # noqa: E402

import nopx.datagen as dg  # noqa: E402
from nopx.datagen.family import sample_features  # noqa: E402
from nopx.datagen.pardiso import pardiso_available  # noqa: E402
from nopx.datagen.solvers import SolveStats  # noqa: E402
from nopx.datagen.sorting import plan_chains  # noqa: E402

RTOL = 1e-8
Engine = Callable[[list], Iterator[tuple[np.ndarray, SolveStats]]]


def _stats(matrix, x, rhs, start, matvecs=0) -> SolveStats:
    return SolveStats.measure(matrix, x, rhs, start=start, matvecs=matvecs)


def pyamg_cg(systems):
    """AMG-CG baseline: a fresh pyamg SA hierarchy per system; the faster of pyamg's CG and SciPy's CG."""
    for matrix, rhs in systems:
        start = time.perf_counter()
        ml = pyamg.smoothed_aggregation_solver(sp.csr_matrix(matrix))
        x, _ = spla.cg(matrix, rhs, rtol=0.5 * RTOL, atol=0.0, M=ml.aspreconditioner(), maxiter=500)
        yield x, _stats(matrix, x, rhs, start)


def pyamg_solve(systems):
    """AMG-CG baseline as DATAGEN.md measured it: ``ml.solve(b, tol, accel='cg')``."""
    for matrix, rhs in systems:
        start = time.perf_counter()
        ml = pyamg.smoothed_aggregation_solver(sp.csr_matrix(matrix))
        x = ml.solve(rhs, tol=0.5 * RTOL, accel="cg", maxiter=500)
        yield x, _stats(matrix, x, rhs, start)


def plain_pypardiso(systems):
    """pypardiso.spsolve per system (LU, analysis every system): DATAGEN §4's PARDISO baseline."""
    import pypardiso

    for matrix, rhs in systems:
        start = time.perf_counter()
        x = pypardiso.spsolve(sp.csr_matrix(matrix), rhs)
        yield x, _stats(matrix, x, rhs, start)


def engine(method: str, **options) -> Engine:
    built = dg.build_solver(method, **options)
    if hasattr(built, "warm_up"):  # a compiled engine loads its kernels once per process: start-up, not solve
        built.warm_up()
    return built.solve


def run_goal(title: str, systems: list, features: np.ndarray, methods: dict[str, tuple[Engine, bool, bool]],
             chain: int, budget: float, reference: np.ndarray | None) -> dict:
    """Solve ``systems`` with every method; ``methods[name] = (engine, chained_and_sorted, baseline)``."""
    count = len(systems)
    start = time.perf_counter()
    sorted_chains = plan_chains(features, chain)
    plan_seconds = time.perf_counter() - start
    natural = [list(range(lo, min(lo + chain, count))) for lo in range(0, count, chain)]
    rows = {name: dict(seconds=plan_seconds if sort else 0.0, matvecs=0, done=0, worst_residual=0.0,
                       solutions={}, baseline=baseline, retried=0)
            for name, (_, sort, baseline) in methods.items()}
    names = list(methods)
    for c in range(len(natural)):
        for name in names[c % len(names):] + names[: c % len(names)]:
            fn, sort, _ = methods[name]
            row = rows[name]
            if row["seconds"] > budget:
                continue
            members = (sorted_chains if sort else natural)[c] if c < len(sorted_chains if sort else natural) else []
            for index, (x, stats) in zip(members, fn([systems[i] for i in members]), strict=True):
                row["seconds"] += stats.seconds
                row["matvecs"] += stats.matvecs
                row["done"] += 1
                row["worst_residual"] = max(row["worst_residual"], stats.residual)
                row["retried"] += int(not stats.residual <= RTOL)
                row["solutions"][index] = x
        print(f"  [{title}] chain {c + 1}/{len(natural)}: " + ", ".join(
            f"{n} {1e3 * r['seconds'] / max(r['done'], 1):.0f}ms" for n, r in rows.items()), flush=True)
    if reference is None:
        reference = rows["splu"]["solutions"]
    table = []
    for name, row in rows.items():
        errors = [np.linalg.norm(x - reference[i]) / np.linalg.norm(reference[i])
                  for i, x in row["solutions"].items() if i in reference]
        per = row["seconds"] / max(row["done"], 1)
        table.append(dict(method=name, baseline=row["baseline"], done=row["done"], partial=row["done"] < count,
                          ms_per_system=1e3 * per, total_s=per * count,
                          matvecs_per_system=row["matvecs"] / max(row["done"], 1),
                          max_rel_error=max(errors) if errors else None, worst_residual=row["worst_residual"],
                          misses=row["retried"]))
    valid = [r for r in table if r["misses"] == 0 and (r["max_rel_error"] or 0) <= 1e-7]
    baselines = [r for r in valid if r["baseline"]]
    best = min(baselines, key=lambda r: r["ms_per_system"]) if baselines else None
    for r in table:
        r["speedup_vs_best_baseline"] = best["ms_per_system"] / r["ms_per_system"] if best else None
    return dict(goal=title, count=count, unknowns=systems[0][0].shape[0], chain=chain, plan_seconds=plan_seconds,
                best_baseline=best["method"] if best else None, rows=table)


def make(pde: str, n: int, count: int, **config) -> tuple[list, np.ndarray]:
    cls = dg.family_class(pde)
    family = cls(cls.config_type(**config), grid=dg.CellGrid(n=n, ndim=cls.ndim), seed=0)
    problems = [family.problem(i) for i in range(count)]
    features = np.stack([sample_features(family, i) for i in range(count)])
    return [(sp.csc_matrix(p.matrix), p.rhs) for p in problems], features


def goal_g1(args) -> list[dict]:
    results = []
    for label, config in (("G1 darcy pwc", {}), ("G1 darcy smooth", {"coefficient": "smooth"})):
        systems, features = make("darcy", 256, args.count, **config)
        methods = {
            "splu": (engine("direct"), False, True),
            "amg_cg(pyamg)": (pyamg_cg, False, True),
            "ilu_gmres": (engine("gmres", preconditioner="ilu", rtol=RTOL), False, True),
            "nopx amg (refit)": (engine("amg", rtol=RTOL), True, False),
            "nopx gmg": (engine("gmg", rtol=RTOL), False, False),
        }
        if pardiso_available():
            methods["pypardiso"] = (plain_pypardiso, False, True)
            methods["nopx pardiso"] = (engine("pardiso"), True, False)
        results.append(run_goal(label, systems, features, methods, args.chain, args.budget, None))
    return results


def goal_g2(args) -> list[dict]:
    systems, features = make("helmholtz", 256, args.count)
    methods = {
        "splu": (engine("direct"), False, True),
        "ilu_gmres": (engine("gmres", preconditioner="ilu", rtol=RTOL), False, True),
        "nopx gcrodr+ilu": (engine("gcrodr", m=40, k=20, preconditioner="ilu", rtol=RTOL), True, False),
        "nopx gmg": (engine("gmg", rtol=RTOL), False, False),
    }
    if pardiso_available():
        methods["pypardiso"] = (plain_pypardiso, False, True)
        methods["nopx pardiso"] = (engine("pardiso"), True, False)
    return [run_goal("G2 helmholtz", systems, features, methods, args.chain, args.budget, None)]


def goal_g3(args) -> list[dict]:
    systems, features = make("darcy3d", 64, args.count3d)
    reference_engine = dg.build_solver("amg", rtol=1e-12, precision="float64")
    reference = {i: x for i, (x, _) in enumerate(reference_engine.solve(systems))}
    methods = {
        "amg_cg(pyamg+scipy)": (pyamg_cg, False, True),
        "amg_cg(pyamg solve)": (pyamg_solve, False, True),
        "nopx amg (refit, f32 cycle)": (engine("amg", rtol=RTOL), True, False),
        "nopx gmg": (engine("gmg", rtol=RTOL), False, False),
    }
    return [run_goal("G3 darcy3d 64^3", systems, features, methods, args.chain3d, args.budget, reference)]


def goal_g4(args) -> list[dict]:
    results = []
    for label, config in (("G4 SKR darcy lognormal", {"coefficient": "lognormal"}), ("G4 SKR darcy pwc", {})):
        systems, features = make("darcy", 100, args.count, **config)
        methods = {
            "splu": (engine("direct"), False, True),
            "gmres40+jacobi (k=0)": (engine("gcrodr", m=40, k=0, preconditioner="jacobi", rtol=RTOL), False, True),
            "gcrodr40,20+jacobi unsorted": (engine("gcrodr", m=40, k=20, preconditioner="jacobi", rtol=RTOL),
                                            False, False),
            "gcrodr40,20+jacobi sorted": (engine("gcrodr", m=40, k=20, preconditioner="jacobi", rtol=RTOL),
                                          True, False),
        }
        result = run_goal(label, systems, features, methods, args.count, args.budget, None)
        rows = {r["method"]: r for r in result["rows"]}
        plain = rows["gmres40+jacobi (k=0)"]
        for r in result["rows"]:
            r["time_ratio_vs_gmres"] = plain["ms_per_system"] / r["ms_per_system"]
            r["matvec_ratio_vs_gmres"] = (plain["matvecs_per_system"] / r["matvecs_per_system"]
                                          if r["matvecs_per_system"] else None)
        results.append(result)
    return results


def markdown(results: list[dict]) -> str:
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    lines = []
    for res in results:
        lines.append(f"\n### {res['goal']}: {res['count']} systems, {res['unknowns']} unknowns, chains of "
                     f"{res['chain']}; best baseline: **{res['best_baseline']}**\n")
        extra = "time/mat-vec ratio vs GMRES |" if "time_ratio_vs_gmres" in res["rows"][0] else ""
        lines.append(f"| method | baseline | done | ms/system | total s | mat-vecs/system | max rel err | misses | "
                     f"speedup vs best baseline | {extra}")
        lines.append("|---" * (10 if extra else 9) + "|")
        for r in res["rows"]:
            total = f"{r['total_s']:.1f}" + (" est" if r["partial"] else "")
            cell = (f" {r['time_ratio_vs_gmres']:.2f} / {fmt(r['matvec_ratio_vs_gmres'], '.1f')} |" if extra else "")
            lines.append(f"| {r['method']} | {'yes' if r['baseline'] else ''} | {r['done']} | {r['ms_per_system']:.1f} "
                         f"| {total} | {r['matvecs_per_system']:.0f} | {fmt(r['max_rel_error'], '.1e')} | "
                         f"{r['misses']} | {fmt(r['speedup_vs_best_baseline'], '.2f')} |{cell}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", nargs="+", default=["G1", "G2", "G3", "G4"])
    parser.add_argument("--count", type=int, default=100, help="systems per 2-D goal")
    parser.add_argument("--count3d", type=int, default=20, help="systems for G3 (64^3)")
    parser.add_argument("--chain", type=int, default=32)
    parser.add_argument("--chain3d", type=int, default=10)
    parser.add_argument("--budget", type=float, default=90.0, help="seconds per method per goal")
    parser.add_argument("--out", default=None, help="write the JSON results here")
    args = parser.parse_args()
    goals = {"G1": goal_g1, "G2": goal_g2, "G3": goal_g3, "G4": goal_g4}
    started = time.perf_counter()
    results = []
    for goal in args.goals:
        results += goals[goal](args)
        print(markdown(results[-1:]), flush=True)
    print("\n# all goals" + markdown(results))
    print(f"\nwall {time.perf_counter() - started:.0f} s on {platform.machine()} ({os.cpu_count()} cores), "
          f"pyamg {pyamg.__version__}, pardiso {'yes' if pardiso_available() else 'no'}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
