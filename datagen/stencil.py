r"""The cell-centred 5-point finite-volume diffusion operator ``-∇·(a ∇u)`` with ``u = 0`` on the boundary.

Unknowns are the ``n × n`` cell averages of ``u`` on ``(0, 1)^2`` (``h = 1/n``), flattened
row-major (``p = i n + j``, ``i`` along x = axis 0). The flux through the face between
neighbouring cells ``p`` and ``q`` is ``a_{pq} (u_p - u_q) / h`` with the arithmetic
average ``a_{pq} = (a_p + a_q) / 2`` (the FNO ``solve_gwf`` stencil). At the Dirichlet
boundary the face sits ``h / 2`` from the cell centre and uses the boundary cell's own
coefficient (a ghost cell mirroring ``-u``): flux ``2 a_p u_p / h``. Dividing the cell
balance by ``h²`` gives ``A u = f`` with ``f`` the source at the cell centres; ``A`` is
symmetric positive definite and the scheme is second-order accurate.

>>> A = diffusion_matrix(np.ones((2, 2)))
>>> A.toarray() / 4  # h² A, a = 1: per cell two interior faces (1) and two boundary faces (2)
array([[ 6., -1., -1.,  0.],
       [-1.,  6.,  0., -1.],
       [-1.,  0.,  6., -1.],
       [ 0., -1., -1.,  6.]])
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["diffusion_matrix"]


def diffusion_matrix(a: np.ndarray, length: float = 1.0) -> sp.csc_matrix:
    """Assemble ``-∇·(a ∇·)`` with zero Dirichlet data on ``[0, length)^2`` as a sparse SPD matrix.

    Args:
      a: the coefficient at the cell centres, shape ``(n, n)``, positive.
      length: the side of the square domain.

    Returns:
      CSC float64 matrix of shape ``(n², n²)``, already divided by ``h²``.
    """
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    scale = (n / length) ** 2
    # Face transmissibilities: interior faces average their two cells, boundary faces use
    # the boundary cell's coefficient at distance h/2 (hence the factor 2).
    tx = np.zeros((n + 1, n))
    tx[1:-1] = 0.5 * (a[1:] + a[:-1])
    tx[0], tx[-1] = 2 * a[0], 2 * a[-1]
    ty = np.zeros((n, n + 1))
    ty[:, 1:-1] = 0.5 * (a[:, 1:] + a[:, :-1])
    ty[:, 0], ty[:, -1] = 2 * a[:, 0], 2 * a[:, -1]
    diagonal = (tx[:-1] + tx[1:] + ty[:, :-1] + ty[:, 1:]).ravel()
    # Coupling p -> p + 1 (along y) is zero where the row ends; p -> p + n (along x).
    along_y = np.zeros((n, n))
    along_y[:, :-1] = ty[:, 1:-1]
    along_y = along_y.ravel()[:-1]
    along_x = tx[1:-1].ravel()
    matrix = sp.diags(
        [diagonal, -along_y, -along_y, -along_x, -along_x],
        [0, 1, -1, n, -n],
        shape=(n * n, n * n),
        format="csc",
    )
    return matrix * scale
