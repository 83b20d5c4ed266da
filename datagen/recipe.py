"""Datagen recipes: one YAML file describing a dataset, parsed into typed dataclasses.

::

    pde: darcy                 # a registered family (nopx.datagen.available_families())
    seed: 0                    # sample i is drawn from default_rng([seed, i])
    samples: 1200
    first_index: 0             # global index of the file's first sample
    out: data/darcy_pwc_64.h5
    grid: {n: 64, subsample: 1}
    darcy: {coefficient: piecewise_constant, alpha: 2.0, tau: 3.0, modes: 32, high: 12.0, low: 3.0, source: 1.0}
    solver: {method: direct, rtol: 1.0e-8, options: {}, chain: 32, sort: true, on_miss: error}
    storage: {dtype: float32}
    imports: [./my_family.py]  # user modules to import first (e.g. a @register_family PDE)

The section named after ``pde`` holds the family's parameters (its ``config_type``).
Every mistake is a :class:`~nopx.errors.UserError` naming the file and key:

>>> recipe = recipe_from_mapping({"pde": "darcy", "samples": 4, "out": "x.h5"}, where="r.yaml")
>>> recipe.grid.n, recipe.physics.high, recipe.solver.method
(64, 12.0, 'direct')
>>> recipe_from_mapping({"pde": "darcy", "samples": 0, "out": "x.h5"}, where="r.yaml")
Traceback (most recent call last):
...
nopx.errors.UserError: r.yaml: samples: must be positive, got 0
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml

from nopx.config import apply_overrides, parse_dataclass, read_yaml, to_dict
from nopx.datagen.family import Family, available_families, family_class
from nopx.datagen.grid import CellGrid
from nopx.datagen.solvers import Solver, available_solvers, build_solver, solver_takes_rtol
from nopx.errors import UserError
from nopx.imports import import_modules, resolve

__all__ = [
    "Recipe",
    "GridConfig",
    "SolverConfig",
    "StorageConfig",
    "load_recipe",
    "recipe_from_mapping",
    "differing_keys",
]


@dataclasses.dataclass(frozen=True)
class GridConfig:
    """Solve on ``n`` cells per axis; store every ``subsample``-th point (see :mod:`nopx.datagen.grid`)."""

    n: int = 64
    subsample: int = 1

    def __post_init__(self) -> None:
        if self.n < 4:
            raise ValueError(f"n: need at least 4 cells per axis, got {self.n}")
        if not 1 <= self.subsample < self.n:
            raise ValueError(f"subsample: must be in [1, n), got {self.subsample}")


@dataclasses.dataclass(frozen=True)
class SolverConfig:
    """The engine, the true relative residual every sample must reach, and how samples are chained.

    ``method`` is built with ``options`` (an iterating engine gets ``rtol`` from here unless
    its options set it); ``chain`` is the longest sequence of samples one engine call
    solves, ``sort`` orders similar samples into the same chain (:mod:`nopx.datagen.sorting`).
    ``on_miss``: a sample the engine misses ``rtol`` on (or fails on: a breakdown, NaN) is an
    error (``error``), or is solved again directly and flagged in ``meta/retried`` (``direct``).
    """

    method: str = "direct"
    rtol: float = 1e-8
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    chain: int = 32
    sort: bool = True
    on_miss: Literal["error", "direct"] = "error"

    def __post_init__(self) -> None:
        if not 0 < self.rtol < 1:
            raise ValueError(f"rtol: must be in (0, 1), got {self.rtol}")
        if self.chain < 1:
            raise ValueError(f"chain: must be positive, got {self.chain}")
        self.build()

    def build(self) -> Solver:
        """The configured engine (``ValueError`` naming ``method``/``options`` if it cannot be built)."""
        if self.method not in available_solvers():
            build_solver(self.method)  # raises "method: unknown solver ..."
        options = {"rtol": self.rtol, **self.options} if solver_takes_rtol(self.method) else self.options
        try:
            return build_solver(self.method, **options)
        except (TypeError, ValueError) as err:
            raise ValueError(f"options: {err}") from None


@dataclasses.dataclass(frozen=True)
class StorageConfig:
    """On-disk dtype of the fields; datagen always computes in float64."""

    dtype: Literal["float32", "float64"] = "float32"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A parsed recipe. ``physics`` is the family's config (the YAML section named like ``pde``)."""

    pde: str
    out: str
    samples: int
    seed: int = 0
    first_index: int = 0
    grid: GridConfig = dataclasses.field(default_factory=GridConfig)
    solver: SolverConfig = dataclasses.field(default_factory=SolverConfig)
    storage: StorageConfig = dataclasses.field(default_factory=StorageConfig)
    physics: Any = None
    imports: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.samples <= 0:
            raise ValueError(f"samples: must be positive, got {self.samples}")
        if self.seed < 0:
            raise ValueError(f"seed: must be a non-negative integer, got {self.seed}")
        if self.first_index < 0:
            raise ValueError(f"first_index: must be non-negative, got {self.first_index}")
        if not self.out:
            raise ValueError("out: name the HDF5 file to write, e.g. data/darcy.h5")
        family_class(self.pde)
        try:
            self.solve_grid()
        except ValueError as err:
            raise ValueError(f"grid: {err}") from None

    def solve_grid(self) -> Any:
        """The family's grid (its ``grid_type``, default :class:`CellGrid`) for the ``grid:`` section."""
        cls = family_class(self.pde)
        grid_type = getattr(cls, "grid_type", CellGrid)
        return grid_type(n=self.grid.n, ndim=cls.ndim, subsample=self.grid.subsample)

    def family(self) -> Family:
        """The PDE family on this recipe's solve grid."""
        return family_class(self.pde)(self.physics, grid=self.solve_grid(), seed=self.seed)

    def to_mapping(self) -> dict[str, Any]:
        """The recipe in its YAML layout (every default filled in; no ``solver`` for a solver-free family)."""
        data = to_dict(self)
        if not getattr(family_class(self.pde), "uses_solver", True):
            data.pop("solver")
        if not data["imports"]:
            data.pop("imports")
        physics = data.pop("physics")
        layout = ("pde", "seed", "samples", "first_index", "out", "grid")
        return {**{k: data.pop(k) for k in layout}, self.pde: physics, **data}

    def to_yaml(self) -> str:
        """The resolved recipe as YAML text; :func:`recipe_from_mapping` reads it back."""
        return yaml.safe_dump(self.to_mapping(), sort_keys=False)


def load_recipe(path: str | pathlib.Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read the recipe at ``path`` with ``--set`` style ``"key.path=value"`` overrides applied.

    Relative ``imports`` paths are taken from the recipe's folder and stored absolute.
    """
    raw = apply_overrides(read_yaml(path), overrides)
    if isinstance(raw.get("imports"), list):
        raw["imports"] = list(resolve([str(e) for e in raw["imports"]], base=pathlib.Path(path).parent))
    return recipe_from_mapping(raw, where=str(path))


def recipe_from_mapping(mapping: Mapping[str, Any], *, where: str) -> Recipe:
    """Parse an already-read recipe; ``where`` names its origin in error messages."""
    raw = dict(mapping)
    imports = raw.get("imports") or []
    if not isinstance(imports, list) or not all(isinstance(e, str) for e in imports):
        raise UserError(f"{where}: imports: expected a list of module names or .py paths, "
                        f"got {imports!r}")
    import_modules(imports, where=where)  # user code may register the family named by pde
    pde = raw.get("pde")
    if not isinstance(pde, str):
        raise UserError(f"{where}: 'pde' must name a PDE family (available: "
                        f"{', '.join(available_families())}), got {pde!r}")
    try:
        cls = family_class(pde)
    except ValueError as err:
        raise UserError(f"{where}: {err}") from None
    if "physics" in raw:
        raise UserError(f"{where}: unknown key 'physics'; put the PDE parameters in the "
                        f"section named after the PDE, '{pde}:'")
    if "solver" in raw and not getattr(cls, "uses_solver", True):
        raise UserError(f"{where}: '{pde}' needs no linear solver; remove the 'solver:' section")
    physics = parse_dataclass(cls.config_type, raw.pop(pde, None), where=where, prefix=f"{pde}.")
    return parse_dataclass(Recipe, {**raw, "physics": physics}, where=where)


def differing_keys(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Key paths whose values differ between two nested mappings.

    >>> differing_keys({"a": 1, "g": {"n": 64}}, {"a": 1, "g": {"n": 32}, "b": 2})
    ['g.n', 'b']
    """
    keys = list(old) + [k for k in new if k not in old]
    found = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found += differing_keys(a, b, prefix=f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}")
    return found
