"""The cell-centred uniform grid every datagen family solves and stores on.

The domain is ``[0, L)^d`` split into ``n`` cells per axis of width ``h = L / n``; values
live at the cell centres ``(j + 1/2) h``, ``j = 0 .. n-1``. Storing every ``k``-th point
(``subsample=k``) keeps the centres ``j = 0, k, 2k, ...``: ``(n - 1) // k + 1`` points per
axis, again a uniform grid (spacing ``k h``, first point ``h / 2``). With ``k = 5`` a 421
solve stores 85 points per axis, the FNO paper's Darcy setting.

>>> cell_centres(4)
array([0.125, 0.375, 0.625, 0.875])
>>> CellGrid(n=421, ndim=2, subsample=5).stored_shape
(85, 85)
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["CellGrid", "UniformGrid", "cell_centres"]


def cell_centres(n: int, length: float = 1.0) -> np.ndarray:
    """The ``n`` cell centres ``(j + 1/2) length / n`` of ``[0, length)``, shape ``(n,)``."""
    return (np.arange(n) + 0.5) * (length / n)


class UniformGrid:
    """What every datagen grid shares: ``n`` points per axis on ``[0, length)^ndim``, stored
    every ``subsample``-th point; subclasses say where the first point is (:attr:`origin`)."""

    n: int
    ndim: int
    subsample: int
    length: float

    @property
    def origin(self) -> float:
        """Coordinate of the first point on every axis."""
        raise NotImplementedError

    @property
    def h(self) -> float:
        """Point spacing of the solve (simulation) grid."""
        return self.length / self.n

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the solve (simulation) grid, ``(n,) * ndim``."""
        return (self.n,) * self.ndim

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """Shape of a stored field, ``((n - 1) // subsample + 1,) * ndim`` (``n // subsample``
        when ``subsample`` divides ``n``)."""
        return ((self.n - 1) // self.subsample + 1,) * self.ndim

    def store(self, field: np.ndarray) -> np.ndarray:
        """Every ``subsample``-th point of ``field`` (shape ``(..., *shape)``) on every spatial axis."""
        return field[(..., *(slice(None, None, self.subsample),) * self.ndim)]

    def attrs(self) -> dict[str, list[float] | list[int]]:
        """The grid as HDF5 attributes: stored shape, domain extent, first point, spacing."""
        return {
            "grid_shape": list(self.stored_shape),
            "grid_extent": [self.length] * self.ndim,
            "grid_origin": [self.origin] * self.ndim,
            "grid_spacing": [self.h * self.subsample] * self.ndim,
            "solve_shape": list(self.shape),
        }


@dataclasses.dataclass(frozen=True)
class CellGrid(UniformGrid):
    """A cell-centred grid of ``n`` cells per axis on ``[0, length)^ndim``, stored every ``subsample``-th point.

    >>> grid = CellGrid(n=8, ndim=2, subsample=3)
    >>> grid.h, grid.stored_shape
    (0.125, (3, 3))
    >>> grid.store(np.arange(64.0).reshape(8, 8))[0]
    array([0., 3., 6.])
    """

    n: int
    ndim: int
    subsample: int = 1
    length: float = 1.0

    @property
    def origin(self) -> float:
        """Cell centres start half a cell in."""
        return self.h / 2
