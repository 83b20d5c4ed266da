"""What a PDE family is to the runner, and the registry that finds one by its recipe name.

A *stationary linear* family turns a global sample index into one sparse system
(:meth:`Family.problem`) and the system's solution into the stored fields
(:meth:`Family.fields_of`). Everything random about sample ``i`` comes from
``np.random.default_rng([seed, i])``, so samples are independent of the order, the
process and the grid they are made on. Time-dependent families (heat: many right-hand
sides per matrix) and solver-free ones (Navier–Stokes, pseudo-spectral) will get their own
protocols beside this one.

>>> available_families()
('darcy',)
>>> family_class("darcy").fields
('a', 'u')
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
import scipy.sparse as sp

from nopx.datagen.grid import CellGrid

__all__ = ["Family", "Problem", "register_family", "family_class", "available_families"]


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

    def problem(self, index: int) -> Problem:
        """The system of global sample ``index``."""
        ...

    def fields_of(self, problem: Problem, solution: np.ndarray) -> dict[str, np.ndarray]:
        """Every stored field on the solve grid, keyed by :attr:`fields`."""
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
