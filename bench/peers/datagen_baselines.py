#!/usr/bin/env python3
"""Expert datagen pipelines for ``bench/datagen.py``: sample, assemble, solve, write, end to end.

One process makes the samples ``i ≡ part (mod parts)`` of a nopx datagen recipe: each sample's
coefficient and system come from the recipe's family (``family.problem(i)``: the same
sampling and assembly code nopx runs, so both sides do identical work outside the solve), are
solved by an expert's method, and the stored fields are written to an HDF5 file with h5py,
one chunk per sample, as they are solved. Methods:

* ``pardiso``: MKL PARDISO through pypardiso's solver object, Cholesky (``mtype=2``; ``-2``,
  Bunch-Kaufman ``LDLᵀ``, with ``--indefinite``) on the upper triangle, the symbolic analysis
  (phase 11) done once for the first matrix and reused for every later one (phase 23 per
  system: numerical factorisation and solve). All samples share the sparsity pattern.
* ``splu``: SuperLU (``scipy.sparse.linalg.splu``) with the MMD ordering of ``AᵀA`` per system.
* ``amg``: pyamg smoothed-aggregation AMG as a CG preconditioner; the hierarchy is built on
  the first matrix and reused for later ones while CG still converges in ``--amg-maxiter``
  iterations, rebuilt on the current matrix otherwise.

Every solution must reach a true relative residual of ``--rtol`` (an error otherwise). The
thread count is set through ``OMP/MKL/OPENBLAS_NUM_THREADS`` by the caller before this
process starts. Run by ``bench/datagen.py``; by hand::

    python bench/peers/datagen_baselines.py --recipe experiments/datagen/darcy_pwc.yaml \\
        --set grid.n=128 --set samples=20 --method pardiso --out /tmp/p.h5
"""

from __future__ import annotations

import argparse
import os
import time

import h5py
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from nopx.datagen import load_recipe
from nopx.datagen.family import stored_shapes
from nopx.datagen.pardiso import mkl_runtime_path


class Pardiso:
    def __init__(self, indefinite: bool) -> None:
        # pypardiso searches all of sys.prefix for MKL (1.7 s per process here) unless told
        # where the mkl wheel put it, as an expert would tell it.
        if path := mkl_runtime_path():
            os.environ.setdefault("PYPARDISO_MKL_RT", path)
        import pypardiso

        self.solver = pypardiso.PyPardisoSolver(mtype=-2 if indefinite else 2)
        self.analysed = False

    def __call__(self, matrix: sp.spmatrix, rhs: np.ndarray) -> np.ndarray:
        upper = sp.triu(matrix, format="csr")
        upper.sort_indices()
        rhs = np.asfortranarray(rhs, dtype=np.float64)
        self.solver._check_A(upper)
        if not self.analysed:
            self.solver.set_phase(11)
            self.solver._call_pardiso(upper, rhs)
            self.analysed = True
        self.solver.set_phase(23)
        return self.solver._call_pardiso(upper, rhs)


def superlu(matrix: sp.spmatrix, rhs: np.ndarray) -> np.ndarray:
    return spla.splu(sp.csc_matrix(matrix), permc_spec="MMD_AT_PLUS_A").solve(rhs)


class ReusedAMG:
    def __init__(self, rtol: float, maxiter: int) -> None:
        self.rtol, self.maxiter, self.ml = rtol, maxiter, None

    def _cg(self, matrix: sp.csr_matrix, rhs: np.ndarray) -> tuple[np.ndarray, int]:
        # 0.5 rtol: CG's recursive residual drifts a little from the true one.
        x, info = spla.cg(matrix, rhs, rtol=0.5 * self.rtol, atol=0.0,
                          M=self.ml.aspreconditioner(), maxiter=self.maxiter)
        return x, info

    def __call__(self, matrix: sp.spmatrix, rhs: np.ndarray) -> np.ndarray:
        import pyamg

        matrix = sp.csr_matrix(matrix)
        if self.ml is not None:
            x, info = self._cg(matrix, rhs)
            if info == 0:
                return x
        self.ml = pyamg.smoothed_aggregation_solver(matrix)
        return self._cg(matrix, rhs)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--method", required=True, choices=("pardiso", "splu", "amg"))
    parser.add_argument("--indefinite", action="store_true", help="pardiso: LDLᵀ, not Cholesky")
    parser.add_argument("--part", default="0/1", help="i/N: make samples i, i+N, i+2N, ...")
    parser.add_argument("--rtol", type=float, default=1e-8)
    parser.add_argument("--amg-maxiter", type=int, default=40)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    recipe = load_recipe(args.recipe, args.overrides)
    family = recipe.family()
    part, parts = (int(v) for v in args.part.split("/"))
    indices = list(range(recipe.first_index + part, recipe.first_index + recipe.samples, parts))
    solve = {"pardiso": lambda: Pardiso(args.indefinite), "splu": lambda: superlu,
             "amg": lambda: ReusedAMG(args.rtol, args.amg_maxiter)}[args.method]()
    worst = 0.0
    with h5py.File(args.out, "w") as fh:
        data = {name: fh.create_dataset(name, (len(indices), *shape), dtype=recipe.storage.dtype,
                                        chunks=(1, *shape))
                for name, shape in stored_shapes(family).items()}
        fh.create_dataset("index", data=np.asarray(indices))
        for row, index in enumerate(indices):
            problem = family.problem(index)
            x = solve(problem.matrix, problem.rhs)
            residual = np.linalg.norm(problem.rhs - problem.matrix @ x) / np.linalg.norm(problem.rhs)
            if not residual <= args.rtol:
                raise SystemExit(f"sample {index}: residual {residual:.1e} misses {args.rtol:.0e}")
            worst = max(worst, residual)
            for name, value in family.fields_of(problem, x).items():
                data[name][row] = value
        fh.attrs["worst_residual"] = worst
    print(f"{args.method} part {args.part}: {len(indices)} samples, worst residual {worst:.1e}, "
          f"{time.process_time():.1f} s CPU")


if __name__ == "__main__":
    main()
