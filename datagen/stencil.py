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

import functools
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from nopx.datagen.grid import cell_centres

__all__ = ["diffusion_matrix", "dirichlet_lift"]


def _along(axis: int, ndim: int, index: slice | int) -> tuple[slice | int, ...]:
    """The index tuple selecting ``index`` along ``axis`` and everything along the other axes."""
    return tuple(index if d == axis else slice(None) for d in range(ndim))


@functools.lru_cache(maxsize=8)
def _stencil_pattern(n: int, ndim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CSC structure of the ``(2d + 1)``-point stencil on ``n^d`` cells: ``(source, indices, indptr)``.

    The values are assembled as ``2d + 1`` bands, one per offset ``-s_0 < … < -1 < 0 < 1 <
    … < s_0`` (``s_a = n^(d-1-a)``), band ``k`` holding at cell ``p`` the coupling of ``p``
    and ``p + offset_k``; ``source`` lists, entry by entry of the CSC data, its position in
    the flattened ``(2d + 1, n^d)`` bands. A symmetric matrix's columns are its rows, so
    ``indices`` lists ``p + offset`` of those entries row by row.
    """
    size = n**ndim
    strides = [n ** (ndim - 1 - axis) for axis in range(ndim)]
    offsets = np.array([-s for s in strides] + [0] + strides[::-1])
    cells = np.indices((n,) * ndim).reshape(ndim, -1)
    present = np.ones((size, len(offsets)), dtype=bool)
    for axis in range(ndim):
        present[:, axis] = cells[axis] > 0
        present[:, -1 - axis] = cells[axis] < n - 1
    columns, bands = np.nonzero(present)
    source = bands.astype(np.intp) * size + columns
    indices = (columns + offsets[bands]).astype(np.int32)
    indptr = np.concatenate([[0], np.cumsum(present.sum(axis=1))]).astype(np.int32)
    return source, indices, indptr


def diffusion_matrix(a: np.ndarray, length: float = 1.0, shift: float = 0.0) -> sp.csc_matrix:
    """Assemble ``-∇·(a ∇·) - shift`` with zero Dirichlet data on ``[0, length)^d`` as a sparse matrix.

    Args:
      a: the coefficient at the cell centres, shape ``(n,) * d``, positive.
      length: the side of the cubic domain.
      shift: subtracted from the diagonal (``k²`` of Helmholtz); ``0`` gives an SPD matrix.

    Returns:
      CSC float64 matrix of shape ``(n^d, n^d)``, already divided by ``h²``: the 5-point
      stencil in 2-D, the 7-point stencil in 3-D. The structure is cached per grid, so
      assembly costs a few passes over the values.
    """
    a = np.asarray(a, dtype=np.float64)
    n, ndim = a.shape[0], a.ndim
    source, indices, indptr = _stencil_pattern(n, ndim)
    scale = (n / length) ** 2
    bands = np.empty((2 * ndim + 1, a.size))
    diagonal = bands[ndim].reshape(a.shape)
    diagonal[...] = 0.0
    for axis in range(ndim):
        lower, upper = _along(axis, ndim, slice(None, -1)), _along(axis, ndim, slice(1, None))
        # The face between cells i and i + 1 along the axis; the band's entries at the far
        # wall are left unset: the pattern has no entry there.
        face = bands[2 * ndim - axis].reshape(a.shape)[lower]
        np.add(a[lower], a[upper], out=face)
        face *= 0.5
        diagonal[lower] += face
        diagonal[upper] += face
        # Boundary faces at distance h/2 use the boundary cell's own coefficient (factor 2).
        for side in (0, -1):
            diagonal[_along(axis, ndim, side)] += 2 * a[_along(axis, ndim, side)]
        face *= -scale
        stride = n ** (ndim - 1 - axis)
        bands[axis, stride:] = bands[2 * ndim - axis, :-stride]  # the coupling to cell p - s is p - s's to p
    bands[ndim] *= scale
    bands[ndim] -= shift
    return sp.csc_matrix((bands.ravel().take(source), indices, indptr), shape=(a.size, a.size))


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
