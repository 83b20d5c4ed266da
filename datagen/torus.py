"""The uniform node grid of the periodic unit square (the torus), for spectral families.

Values live at the nodes ``x_j = j h``, ``h = L / n``, ``j = 0 .. n-1`` (the point ``L`` is
``0`` again), as in FNO's Navier–Stokes data. Storing every ``k``-th node (``subsample=k``,
``k`` dividing ``n``) keeps the nodes of the ``n / k`` grid: a 256² simulation stored
with ``subsample=4`` holds exactly the nodes of a 64² simulation.

>>> grid = TorusGrid(n=256, subsample=4)
>>> grid.stored_shape, grid.attrs()["grid_origin"], grid.attrs()["grid_spacing"]
((64, 64), [0.0, 0.0], [0.015625, 0.015625])
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nopx.datagen.grid import UniformGrid

__all__ = ["TorusGrid", "nodes"]


def nodes(n: int, length: float = 1.0) -> np.ndarray:
    """The ``n`` nodes ``j · length / n`` of the periodic interval ``[0, length)``, shape ``(n,)``."""
    return np.arange(n) * (length / n)


@dataclasses.dataclass(frozen=True)
class TorusGrid(UniformGrid):
    """``n`` nodes per axis on the torus ``[0, length)^ndim``, stored every ``subsample``-th node.

    The same interface as :class:`~nopx.datagen.grid.CellGrid` (``h``, ``shape``,
    ``stored_shape``, ``store``, ``attrs``), with the first point at 0.
    """

    n: int
    ndim: int = 2
    subsample: int = 1
    length: float = 1.0

    def __post_init__(self) -> None:
        if self.n % self.subsample:
            raise ValueError(f"subsample: must divide n on a periodic grid (so that the stored "
                             f"points are a uniform grid again), got n={self.n}, subsample={self.subsample}")

    @property
    def origin(self) -> float:
        """The nodes start at 0."""
        return 0.0
