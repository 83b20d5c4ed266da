r"""The cell-centred finite-volume diffusion operator ``-∇·(a ∇u)`` with Dirichlet boundary data, in 2-D or 3-D.

Unknowns are the ``n^d`` cell averages of ``u`` on ``(0, L)^d`` (``h = L/n``), flattened
row-major (``p = i n + j`` in 2-D, ``i`` along x = axis 0). The flux through the face between
neighbouring cells ``p`` and ``q`` is ``a_{pq} (u_p - u_q) / h`` with the arithmetic
average ``a_{pq} = (a_p + a_q) / 2`` (the FNO ``solve_gwf`` stencil). At the Dirichlet
boundary the face sits ``h / 2`` from the cell centre and uses the boundary cell's own
coefficient (a ghost cell mirroring ``2g - u``): flux ``2 a_p (u_p - g) / h``. Dividing the
cell balance by ``h²`` gives ``A u = f + lift(g)`` with ``f`` the source at the cell
centres; ``A`` is symmetric positive definite and the scheme is second-order accurate.

>>> A = diffusion_matrix(np.ones((2, 2)))
>>> A.toarray() / 4  # h² A, a = 1: per cell two interior faces (1) and two boundary faces (2)
array([[ 6., -1., -1.,  0.],
       [-1.,  6.,  0., -1.],
       [-1.,  0.,  6., -1.],
       [ 0., -1., -1.,  6.]])
>>> diffusion_matrix(np.ones((3, 3, 3))).shape
(27, 27)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from nopx.datagen.grid import cell_centres

__all__ = ["diffusion_matrix", "dirichlet_lift"]


def _along(axis: int, ndim: int, index: slice | int) -> tuple[slice | int, ...]:
    """The index tuple selecting ``index`` along ``axis`` and everything along the other axes."""
    return tuple(index if d == axis else slice(None) for d in range(ndim))


def diffusion_matrix(a: np.ndarray, length: float = 1.0) -> sp.csc_matrix:
    """Assemble ``-∇·(a ∇·)`` with zero Dirichlet data on ``[0, length)^d`` as a sparse SPD matrix.

    Args:
      a: the coefficient at the cell centres, shape ``(n,) * d``, positive.
      length: the side of the cubic domain.

    Returns:
      CSC float64 matrix of shape ``(n^d, n^d)``, already divided by ``h²``: the 5-point
      stencil in 2-D, the 7-point stencil in 3-D.
    """
    a = np.asarray(a, dtype=np.float64)
    n, ndim = a.shape[0], a.ndim
    diagonal = np.zeros_like(a)
    bands, offsets = [], []
    for axis in range(ndim):
        lower, upper = a[_along(axis, ndim, slice(None, -1))], a[_along(axis, ndim, slice(1, None))]
        interior = 0.5 * (lower + upper)  # face between cells i and i + 1 along axis
        diagonal[_along(axis, ndim, slice(None, -1))] += interior
        diagonal[_along(axis, ndim, slice(1, None))] += interior
        # Boundary faces at distance h/2 use the boundary cell's own coefficient (factor 2).
        for side in (0, -1):
            diagonal[_along(axis, ndim, side)] += 2 * a[_along(axis, ndim, side)]
        # Coupling p -> p + stride is zero where the cell is last along this axis.
        stride = n ** (ndim - 1 - axis)
        band = np.zeros_like(a)
        band[_along(axis, ndim, slice(None, -1))] = interior
        band = band.ravel()[:-stride]
        bands += [-band, -band]
        offsets += [stride, -stride]
    matrix = sp.diags([diagonal.ravel(), *bands], [0, *offsets], shape=(a.size, a.size), format="csc")
    return matrix * (n / length) ** 2


def dirichlet_lift(a: np.ndarray, g: Callable[..., np.ndarray], length: float = 1.0) -> np.ndarray:
    """The right-hand side term of boundary data ``u = g`` for :func:`diffusion_matrix`, shape ``(n^d,)``.

    A boundary cell gains ``2 a_p g(face centre) / h²`` per boundary face (the ghost-cell
    flux). ``g(x_0, ..., x_{d-1})`` is called with broadcastable coordinate arrays.

    >>> dirichlet_lift(np.ones((2, 2)), lambda x, y: np.ones_like(x + y)).reshape(2, 2)
    array([[16., 16.],
           [16., 16.]])
    """
    a = np.asarray(a, dtype=np.float64)
    n, ndim = a.shape[0], a.ndim
    centres = cell_centres(n, length)
    lift = np.zeros_like(a)
    for axis in range(ndim):
        for side, position in ((0, 0.0), (-1, length)):
            coords = [centres.reshape((-1,) + (1,) * (ndim - 1 - d)) if d != axis else np.array(position)
                      for d in range(ndim)]
            face = np.broadcast_to(g(*coords), a.shape)[_along(axis, ndim, side)]
            lift[_along(axis, ndim, side)] += 2 * a[_along(axis, ndim, side)] * face
    return lift.ravel() * (n / length) ** 2
