"""Dataset generation: random fields, PDE families, solvers, the HDF5 format and the runner.

>>> import nopx.datagen as dg
>>> recipe = dg.recipe_from_mapping({"pde": "darcy", "samples": 2, "out": "x.h5",
...                                  "grid": {"n": 16}, "darcy": {"modes": 8}}, where="demo")
>>> recipe.family().problem(0).matrix.shape
(256, 256)

Entry points: :func:`load_recipe` → :func:`generate` → :func:`open_dataset` / :func:`info`.
Importing this package does not import JAX.
"""

from nopx.datagen.darcy import Darcy2D, DarcyConfig
from nopx.datagen.dataset import DatasetReader, DatasetWriter, open_dataset
from nopx.datagen.family import Family, Problem, available_families, family_class, register_family
from nopx.datagen.grf import CosineGRF
from nopx.datagen.grid import CellGrid
from nopx.datagen.info import info
from nopx.datagen.recipe import Recipe, load_recipe, recipe_from_mapping
from nopx.datagen.runner import generate, merge
from nopx.datagen.solvers import SolveStats, available_solvers, build_solver, register_solver

__all__ = [
    "load_recipe",
    "recipe_from_mapping",
    "Recipe",
    "generate",
    "merge",
    "info",
    "open_dataset",
    "DatasetReader",
    "DatasetWriter",
    "Family",
    "Problem",
    "register_family",
    "family_class",
    "available_families",
    "Darcy2D",
    "DarcyConfig",
    "CosineGRF",
    "CellGrid",
    "SolveStats",
    "build_solver",
    "register_solver",
    "available_solvers",
]
