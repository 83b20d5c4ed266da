"""Dataset generation: random fields, PDE families, solvers, the HDF5 format and the runner.

>>> import nopx.datagen as dg
>>> recipe = dg.recipe_from_mapping({"pde": "darcy", "samples": 2, "out": "x.h5",
...                                  "grid": {"n": 16}, "darcy": {"modes": 8}}, where="demo")
>>> recipe.family().problem(0).matrix.shape
(256, 256)

Entry points: :func:`load_recipe` → :func:`generate` → :func:`open_dataset` / :func:`info`;
:func:`open_dataset` also reads FNO ``.mat``, PDEBench and The Well files in place
(:mod:`nopx.datagen.formats`) and :func:`convert` copies one into a nopx file.
Importing this package does not import JAX.
"""

from nopx.datagen import amg, auto, gcrodr, gmg, krylov, pardiso, sor  # noqa: F401  (register their engines)
from nopx.datagen.advection_diffusion import AdvectionDiffusion2D, AdvectionDiffusionConfig
from nopx.datagen.burgers import Burgers1D, BurgersConfig
from nopx.datagen.chain import SampleResult, solve_chain
from nopx.datagen.convert import convert
from nopx.datagen.darcy import Darcy2D, Darcy3D, Darcy3DConfig, DarcyConfig
from nopx.datagen.dataset import DatasetReader, DatasetWriter, open_dataset
from nopx.datagen.formats import FORMATS, ForeignReader, detect_format
from nopx.datagen.family import Family, Problem, Trajectory, available_families, family_class, register_family
from nopx.datagen.grf import CosineGRF
from nopx.datagen.grid import CellGrid
from nopx.datagen.heat import Heat2D, HeatConfig
from nopx.datagen.helmholtz import Helmholtz2D, HelmholtzConfig
from nopx.datagen.info import info
from nopx.datagen.poisson import Poisson2D, PoissonConfig
from nopx.datagen.navier_stokes import NavierStokes2D, NavierStokesConfig
from nopx.datagen.periodic_grf import PeriodicGRF
from nopx.datagen.recipe import Recipe, load_recipe, recipe_from_mapping
from nopx.datagen.runner import generate, merge
from nopx.datagen.solvers import SolveStats, available_solvers, build_solver, register_solver
from nopx.datagen.sorting import greedy_chain, plan_chains

__all__ = [
    "load_recipe",
    "recipe_from_mapping",
    "Recipe",
    "generate",
    "merge",
    "info",
    "open_dataset",
    "convert",
    "detect_format",
    "FORMATS",
    "ForeignReader",
    "DatasetReader",
    "DatasetWriter",
    "Family",
    "Problem",
    "register_family",
    "family_class",
    "available_families",
    "Darcy2D",
    "DarcyConfig",
    "Darcy3D",
    "Darcy3DConfig",
    "Trajectory",
    "Poisson2D",
    "PoissonConfig",
    "Helmholtz2D",
    "HelmholtzConfig",
    "Heat2D",
    "HeatConfig",
    "AdvectionDiffusion2D",
    "AdvectionDiffusionConfig",
    "solve_chain",
    "SampleResult",
    "greedy_chain",
    "plan_chains",
    "Burgers1D",
    "BurgersConfig",
    "NavierStokes2D",
    "NavierStokesConfig",
    "PeriodicGRF",
    "CosineGRF",
    "CellGrid",
    "SolveStats",
    "build_solver",
    "register_solver",
    "available_solvers",
]
