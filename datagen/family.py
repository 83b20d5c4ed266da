"""What a PDE family is to the runner, and the registry that finds one by its recipe name.

A *stationary linear* family turns a global sample index into one sparse system
(:meth:`Family.problem`) and the system's solution into the stored fields
(:meth:`Family.fields_of`). Everything random about sample ``i`` comes from
``np.random.default_rng([seed, i])``, so samples are independent of the order, the
process and the grid they are made on. A time-dependent linear family returns a
:class:`Trajectory` instead of a :class:`Problem`: one implicit one-step method, a linear
system per time step (:mod:`nopx.datagen.chain` marches it). A family may also offer
``features(index)``, a cheap ``(F,)`` vector (no assembly, no solve) by which similar
samples are sorted into chains (:mod:`nopx.datagen.sorting`), a ``stored_shapes`` property
when a field has more than the grid's axes, and ``attrs()`` for extra root attributes
(:func:`stored_shapes`, :func:`sample_features`, :func:`family_attrs`). A *batch* family
(:class:`BatchFamily`: solver-free, e.g. pseudo-spectral Navier–Stokes) makes whole
batches of samples itself (:meth:`BatchFamily.generate_batch`).

>>> {"darcy", "navier_stokes"} <= set(available_families())
True
>>> family_class("darcy").fields
('a', 'u')
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
import scipy.sparse as sp

from nopx.datagen.grid import CellGrid

__all__ = ["Family", "Problem", "Trajectory", "BatchFamily", "Batch", "register_family", "family_class",
           "available_families", "stored_shapes", "sample_features", "family_attrs"]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One sample's linear system ``matrix @ x = rhs`` and what is known before solving it.

    Attributes:
      matrix: sparse ``(M, M)`` float64.
      rhs: ``(M,)`` float64.
      inputs: fields known up front on the solve grid, e.g. ``{"a": (n, n)}``.
      params: ``(P,)`` the per-sample parameters stored in ``meta/params``.
    """

    matrix: sp.spmatrix | sp.sparray
    rhs: np.ndarray
    inputs: dict[str, np.ndarray]
    params: np.ndarray


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """One sample of a linear time-dependent family: ``matrix @ x_t = explicit @ x_{t-1} + forcing``.

    A one-step implicit method on a fixed matrix (backward Euler, Crank–Nicolson): ``steps``
    systems per sample, one matrix, right-hand sides known only step by step. The solution
    handed to :meth:`Family.fields_of` is ``(records + 1, M)``: ``initial`` and every
    ``every``-th step.

    Attributes:
      matrix, explicit: sparse ``(M, M)`` float64.
      forcing, initial: ``(M,)`` float64.
      steps: time steps; a multiple of ``every``.
      every: steps between stored records.
      inputs, params: as in :class:`Problem`.
    """

    matrix: sp.spmatrix | sp.sparray
    explicit: sp.spmatrix | sp.sparray
    forcing: np.ndarray
    initial: np.ndarray
    steps: int
    every: int
    inputs: dict[str, np.ndarray]
    params: np.ndarray


class Family(Protocol):
    """A registered stationary linear PDE family, built as ``cls(config, grid=..., seed=...)``.

    Class attributes: ``name`` (the recipe's ``pde``), ``config_type`` (the dataclass of the
    recipe section named like the family), ``fields`` (stored field names, in order) and
    ``ndim`` (spatial dimensions).
    """

    name: ClassVar[str]
    config_type: ClassVar[type]
    fields: ClassVar[tuple[str, ...]]
    ndim: ClassVar[int]
    grid: CellGrid

    def __init__(self, config: Any, *, grid: CellGrid, seed: int) -> None: ...

    @property
    def n_params(self) -> int:
        """``P``, the length of :attr:`Problem.params`."""
        ...

    def problem(self, index: int) -> Problem | Trajectory:
        """The system (or time-stepped systems) of global sample ``index``."""
        ...

    def fields_of(self, problem: Problem | Trajectory, solution: np.ndarray) -> dict[str, np.ndarray]:
        """Every stored field on the solve grid, keyed by :attr:`fields`."""
        ...


def stored_shapes(family: Any) -> dict[str, tuple[int, ...]]:
    """The shape of one stored sample of each field: the family's ``stored_shapes``, else the grid's."""
    shapes = getattr(family, "stored_shapes", None)
    return dict(shapes) if shapes is not None else {name: family.grid.stored_shape for name in family.fields}


def sample_features(family: Any, index: int) -> np.ndarray:
    """Sorting features of sample ``index``: the family's ``features(index)``, else its ``params``."""
    features = getattr(family, "features", None)
    return np.asarray(features(index) if features is not None else family.problem(index).params, dtype=np.float64)


def family_attrs(family: Any) -> dict[str, Any]:
    """Root attributes the family adds beside the grid's (``attrs()``, if it has one)."""
    attrs = getattr(family, "attrs", None)
    return dict(attrs()) if attrs is not None else {}


@dataclasses.dataclass(frozen=True)
class Batch:
    """Samples made together by a :class:`BatchFamily`, in the order of the requested indices.

    Attributes:
      fields: ``{name: (m, *stored_shapes[name])}``, already on the stored grid.
      params: ``(m, P)``, stored in ``meta/params``.
      iterations, matvecs, residual, seconds: ``(m,)`` per-sample statistics for ``meta/``
        (their meaning per family is in ``data/README.md``).
    """

    fields: dict[str, np.ndarray]
    params: np.ndarray
    iterations: list[int]
    matvecs: list[int]
    residual: list[float]
    seconds: list[float]


class BatchFamily(Protocol):
    """A registered family that needs no linear solver and makes batches of samples itself.

    Built as ``cls(config, grid=grid_type(n=..., ndim=..., subsample=...), seed=...)``.
    Class attributes as :class:`Family`, plus ``grid_type`` (the grid class the recipe's
    ``grid:`` section builds) and ``uses_solver = False`` (a recipe for it has no
    ``solver:`` section).
    """

    name: ClassVar[str]
    config_type: ClassVar[type]
    fields: ClassVar[tuple[str, ...]]
    ndim: ClassVar[int]
    grid_type: ClassVar[type]
    uses_solver: ClassVar[bool]
    grid: Any

    def __init__(self, config: Any, *, grid: Any, seed: int) -> None: ...

    @property
    def n_params(self) -> int:
        """``P``, the length of one sample's params."""
        ...

    @property
    def batch_size(self) -> int:
        """The largest number of samples :meth:`generate_batch` is asked for at once."""
        ...

    @property
    def stored_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of one stored sample of each field, e.g. ``{"w": (T, m, m)}``."""
        ...

    def attrs(self) -> dict[str, Any]:
        """Root attributes of the dataset beside the grid's (e.g. the stored times)."""
        ...

    def generate_batch(self, indices: Sequence[int]) -> Batch:
        """Global samples ``indices``; raises :class:`~nopx.errors.UserError` on a failed sample."""
        ...


_FAMILIES: dict[str, type] = {}
F = TypeVar("F", bound=type)


def register_family(cls: F) -> F:
    """Class decorator: make ``cls`` available as ``pde: <cls.name>`` in recipes."""
    _FAMILIES[cls.name] = cls
    return cls


def available_families() -> tuple[str, ...]:
    """Names of the registered families."""
    return tuple(_FAMILIES)


def family_class(name: str) -> type:
    """The family registered as ``name``.

    Raises:
      ValueError: ``"pde: ..."`` for an unknown name, naming the closest one.
    """
    if name not in _FAMILIES:
        close = difflib.get_close_matches(name, list(_FAMILIES), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"pde: unknown PDE family {name!r}{hint} (available: {', '.join(_FAMILIES)})")
    return _FAMILIES[name]
