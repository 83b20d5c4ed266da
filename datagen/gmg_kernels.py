"""The compiled kernels of :mod:`nopx.datagen.gmg` (numba, cached on disk after the first compile).

Kept apart so that importing :mod:`nopx.datagen` does not import numba; a kernel calling
another must find it as a module global for numba's cache to hold it across processes.

Arrays are 3-D ``(nx, ny, nz)`` (a 2-D grid is ``(1, n, n)``); an iterate ``u`` is padded
by one ghost cell per side (zero: the Dirichlet walls); ``t_a[i]`` couples cells ``i - 1``
and ``i`` along axis ``a`` (``n_a + 1`` along it, zero at both walls).
"""

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True, fastmath=True)
# A 2-D grid has no x faces: each kernel's row loop comes in a 3-D and a 2-D form (reading
# zero x couplings cost a 2-D sweep 40% more), with the terms written once, inlined here.
inline = numba.njit(cache=True, inline="always", fastmath=True)
#: :func:`band_factor` keeps every pivot at least this fraction of its diagonal entry.
PIVOT_FLOOR = 1e-3


@inline
def _yz_neighbours(u, ty, tz, i, j, k):
    """``Σ t u`` over the y and z neighbours of cell ``(i, j, k)`` (``u`` padded)."""
    return (ty[i, j, k] * u[i + 1, j, k + 1] + ty[i, j + 1, k] * u[i + 1, j + 2, k + 1]
            + tz[i, j, k] * u[i + 1, j + 1, k] + tz[i, j, k + 1] * u[i + 1, j + 1, k + 2])


@inline
def _x_neighbours(u, tx, i, j, k):
    """``Σ t u`` over the x neighbours of cell ``(i, j, k)`` (``u`` padded)."""
    return tx[i, j, k] * u[i, j + 1, k + 1] + tx[i + 1, j, k] * u[i + 2, j + 1, k + 1]


@jit
def smooth(u, f, inverse_diagonal, tx, ty, tz, colours):
    """Red-black Gauss–Seidel on ``u``: one half-sweep per colour of ``colours`` (``(0, 1)`` or ``(1, 0)``).

    A colour's cells depend only on the other colour, so each row is computed in full
    (vectorised) and the colour's half of it kept: cheaper than a strided half row.
    """
    nx, ny, nz = f.shape
    row = np.empty(nz, f.dtype)
    for colour in colours:
        for i in range(nx):
            for j in range(ny):
                if nx > 1:
                    for k in range(nz):
                        row[k] = inverse_diagonal[i, j, k] * (
                            f[i, j, k] + _yz_neighbours(u, ty, tz, i, j, k) + _x_neighbours(u, tx, i, j, k))
                else:
                    for k in range(nz):
                        row[k] = inverse_diagonal[i, j, k] * (f[i, j, k] + _yz_neighbours(u, ty, tz, i, j, k))
                for k in range((i + j + colour) % 2, nz, 2):
                    u[i + 1, j + 1, k + 1] = row[k]


@jit
def residual(u, f, diagonal, tx, ty, tz, r):
    """``r = f - A u``."""
    nx, ny, nz = f.shape
    for i in range(nx):
        for j in range(ny):
            if nx > 1:
                for k in range(nz):
                    r[i, j, k] = (f[i, j, k] - diagonal[i, j, k] * u[i + 1, j + 1, k + 1]
                                  + _yz_neighbours(u, ty, tz, i, j, k) + _x_neighbours(u, tx, i, j, k))
            else:
                for k in range(nz):
                    r[i, j, k] = (f[i, j, k] - diagonal[i, j, k] * u[i + 1, j + 1, k + 1]
                                  + _yz_neighbours(u, ty, tz, i, j, k))


@jit
def restrict_axis(fine, coarse):
    """Along the middle axis, ``(A, 2m, B) -> (A, m, B)``: the adjoint of :func:`prolong_axis`, halved."""
    m, n_b = coarse.shape[1], coarse.shape[2]
    for a in range(fine.shape[0]):
        for b in range(n_b):  # the walls: the ghost's -1/4 lands on the wall cell's own coarse cell
            coarse[a, 0, b] = 0.25 * fine[a, 0, b] + 0.375 * fine[a, 1, b] + 0.125 * fine[a, 2, b]
            coarse[a, m - 1, b] = (0.125 * fine[a, 2 * m - 3, b] + 0.375 * fine[a, 2 * m - 2, b]
                                   + 0.25 * fine[a, 2 * m - 1, b])
        if n_b == 1:  # the last axis: the cells are the contiguous dimension
            for c in range(1, m - 1):
                coarse[a, c, 0] = (0.375 * (fine[a, 2 * c, 0] + fine[a, 2 * c + 1, 0])
                                   + 0.125 * (fine[a, 2 * c - 1, 0] + fine[a, 2 * c + 2, 0]))
        else:
            for c in range(1, m - 1):
                for b in range(n_b):
                    coarse[a, c, b] = (0.375 * (fine[a, 2 * c, b] + fine[a, 2 * c + 1, b])
                                       + 0.125 * (fine[a, 2 * c - 1, b] + fine[a, 2 * c + 2, b]))


@jit
def prolong_axis(coarse, fine):
    """Cell-centred linear interpolation along the middle axis, ``(A, m, B) -> (A, 2m, B)``.

    A fine cell takes ¾ of its own coarse cell and ¼ of the neighbour on its side; past a
    wall the neighbour is the ghost ``-c`` (zero Dirichlet).
    """
    m, n_b = coarse.shape[1], coarse.shape[2]
    for a in range(coarse.shape[0]):
        for b in range(n_b):
            fine[a, 0, b] = 0.5 * coarse[a, 0, b]
            fine[a, 2 * m - 1, b] = 0.5 * coarse[a, m - 1, b]
        if n_b == 1:  # the last axis: the cells are the contiguous dimension
            for c in range(m - 1):
                fine[a, 2 * c + 1, 0] = 0.75 * coarse[a, c, 0] + 0.25 * coarse[a, c + 1, 0]
                fine[a, 2 * c + 2, 0] = 0.25 * coarse[a, c, 0] + 0.75 * coarse[a, c + 1, 0]
        else:
            for c in range(m - 1):  # the cells between coarse centres c and c + 1
                for b in range(n_b):
                    fine[a, 2 * c + 1, b] = 0.75 * coarse[a, c, b] + 0.25 * coarse[a, c + 1, b]
                    fine[a, 2 * c + 2, b] = 0.25 * coarse[a, c, b] + 0.75 * coarse[a, c + 1, b]


@jit
def _transfer(x, a, side, refine):
    """``x`` interpolated (``refine``) or restricted along axis ``a`` to ``side`` cells there."""
    before, after = 1, 1
    for b in range(a):
        before *= x.shape[b]
    for b in range(a + 1, 3):
        after *= x.shape[b]
    out = np.empty((before, side, after), x.dtype)
    if refine:
        prolong_axis(x.reshape((before, x.shape[a], after)), out)
    else:
        restrict_axis(x.reshape((before, x.shape[a], after)), out)
    if a == 0:
        return out.reshape((side, x.shape[1], x.shape[2]))
    if a == 1:
        return out.reshape((x.shape[0], side, x.shape[2]))
    return out.reshape((x.shape[0], x.shape[1], side))


@jit
def restrict(fine):
    """``R fine`` as a new array: halved along every axis longer than 1."""
    x = fine
    for a in range(3):
        if x.shape[a] > 1:
            x = _transfer(x, a, x.shape[a] // 2, False)
    return x


@jit
def prolong_add(coarse, u):
    """``u += P coarse`` for padded ``coarse`` and ``u``: interpolated along every axis on which ``u`` is the longer."""
    x = np.ascontiguousarray(coarse[1:-1, 1:-1, 1:-1])
    for a in range(3):
        if x.shape[a] < u.shape[a] - 2:
            x = _transfer(x, a, 2 * x.shape[a], True)
    nx, ny, nz = x.shape
    for i in range(nx):
        for j in range(ny):
            for k in range(nz):
                u[i + 1, j + 1, k + 1] += x[i, j, k]


@jit
def descend(us, fs, rs, diagonals, inverses, txs, tys, tzs, start, stop, keep):
    """A V-cycle's way down, levels ``start … stop-1``: pre-smooth, restrict the residual into the next ``f``.

    ``us``, ``fs``: every level's padded iterate and right-hand side; ``rs`` and the
    operators: every level but the coarsest (the tuples are padded to a fixed length, so one
    compiled version serves every depth). Each level starts from ``u = 0``, the first from
    its current ``u`` if ``keep`` (a full-multigrid step).
    """
    for level in range(start, stop):
        u, f, r = us[level], fs[level], rs[level]
        if level > start or not keep:
            u[1:-1] = 0
        smooth(u, f, inverses[level], txs[level], tys[level], tzs[level], (0, 1))
        residual(u, f, diagonals[level], txs[level], tys[level], tzs[level], r)
        fs[level + 1][:] = restrict(r)


@jit
def ascend(us, fs, inverses, txs, tys, tzs, start, stop):
    """The way up from level ``stop`` (its solution in ``us[stop]``) to ``start``: add the interpolated correction, post-smooth."""
    for level in range(stop - 1, start - 1, -1):
        prolong_add(us[level + 1], us[level])
        smooth(us[level], fs[level], inverses[level], txs[level], tys[level], tzs[level], (1, 0))


@jit
def vcycle(us, fs, rs, diagonals, inverses, txs, tys, tzs, band, start, stop, keep):
    """A V-cycle on level ``start`` (see :func:`descend`), the coarsest level ``stop`` solved by :func:`band_solve`."""
    descend(us, fs, rs, diagonals, inverses, txs, tys, tzs, start, stop, keep)
    band_solve(band, fs[stop], us[stop])
    ascend(us, fs, inverses, txs, tys, tzs, start, stop)


@jit
def interpolate(coarse, u):
    """``u = P coarse`` (both padded): a coarse solution as the finer level's first guess."""
    u[1:-1] = 0
    prolong_add(coarse, u)


@jit
def restrict_all(fs, stop):
    """``fs[l + 1] = R fs[l]`` for ``l < stop``: the right-hand side on every level."""
    for level in range(stop):
        fs[level + 1][:] = restrict(fs[level])


@jit
def coarsen(diagonal, remainder, tx, ty, tz):
    """The operator on cells twice as wide along every axis longer than 1: ``(diagonal, tx, ty, tz)``.

    A coarse face couples like the mean of the fine faces it covers, at ``(h/H)² = 1/4``;
    so does a coarse boundary face; the zeroth-order term (the diagonal's ``remainder`` past
    its faces, read one cell off each wall, where the boundary faces add to it) is the mean
    over the cells.
    """
    nx, ny, nz = diagonal.shape
    hx, hy, hz = (2 if nx > 1 else 1), (2 if ny > 1 else 1), (2 if nz > 1 else 1)
    cx, cy, cz = nx // hx, ny // hy, nz // hz
    halved = (hx == 2) + (hy == 2) + (hz == 2)
    face_scale = 1.0 / (4 * 2 ** (halved - 1))  # the mean of the fine faces under one coarse face, over 4
    zeroth = remainder.copy()
    if hx == 2:
        zeroth[0], zeroth[nx - 1] = zeroth[1], zeroth[nx - 2]
    if hy == 2:
        zeroth[:, 0], zeroth[:, ny - 1] = zeroth[:, 1], zeroth[:, ny - 2]
    if hz == 2:
        zeroth[:, :, 0], zeroth[:, :, nz - 1] = zeroth[:, :, 1], zeroth[:, :, nz - 2]
    # A coarse face at coarse index c along its axis covers the fine faces at index 2c.
    ctx = np.zeros((cx + 1 if hx == 2 else 2, cy, cz))
    if hx == 2:
        for i in range(cx + 1):
            for j in range(cy):
                for k in range(cz):
                    for dj in range(hy):
                        for dk in range(hz):
                            ctx[i, j, k] += face_scale * tx[2 * i, hy * j + dj, hz * k + dk]
    cty = np.zeros((cx, cy + 1 if hy == 2 else 2, cz))
    if hy == 2:
        for i in range(cx):
            for j in range(cy + 1):
                for k in range(cz):
                    for di in range(hx):
                        for dk in range(hz):
                            cty[i, j, k] += face_scale * ty[hx * i + di, 2 * j, hz * k + dk]
    ctz = np.zeros((cx, cy, cz + 1 if hz == 2 else 2))
    if hz == 2:
        for i in range(cx):
            for j in range(cy):
                for k in range(cz + 1):
                    for di in range(hx):
                        for dj in range(hy):
                            ctz[i, j, k] += face_scale * tz[hx * i + di, hy * j + dj, 2 * k]
    coarse = np.empty((cx, cy, cz))
    for i in range(cx):
        for j in range(cy):
            for k in range(cz):
                cell = ctx[i, j, k] + ctx[i + 1, j, k] + cty[i, j, k] + cty[i, j + 1, k] + ctz[i, j, k] + ctz[i, j, k + 1]
                for di in range(hx):
                    for dj in range(hy):
                        for dk in range(hz):
                            fine = zeroth[hx * i + di, hy * j + dj, hz * k + dk]
                            wall = remainder[hx * i + di, hy * j + dj, hz * k + dk] - fine
                            cell += fine / 2**halved + face_scale * wall
                coarse[i, j, k] = cell
    return coarse, ctx, cty, ctz


@jit
def stencil_slots(indptr, indices, n, ndim, slots):
    """Where a CSR/CSC matrix keeps each stencil entry: fill ``slots`` ``(2 ndim + 1, N)`` (``-1``: none).

    Row 0 takes the diagonal entry of cell ``p``; row ``1 + a`` the entry at outer index ``p``,
    inner ``p + s_a`` (``s_a = n^(ndim-1-a)``); row ``1 + ndim + a`` the one at outer ``p + s_a``,
    inner ``p`` (a symmetric matrix holds equal values in both). Returns False at the first
    entry off the stencil (another offset, a wrap past the grid's edge, a duplicate).
    """
    strides = np.empty(ndim, np.int64)
    strides[ndim - 1] = 1
    for a in range(ndim - 2, -1, -1):
        strides[a] = strides[a + 1] * n
    cell = np.zeros(ndim, np.int64)  # the grid coordinates of `outer`
    for outer in range(indptr.size - 1):
        for entry in range(indptr[outer], indptr[outer + 1]):
            inner = indices[entry]
            row, cell_of_row = -1, outer
            if inner == outer:
                row = 0
            for a in range(ndim):
                if inner == outer + strides[a] and cell[a] < n - 1:
                    row = 1 + a
                elif inner == outer - strides[a] and cell[a] > 0:
                    row, cell_of_row = 1 + ndim + a, inner
            if row < 0 or slots[row, cell_of_row] >= 0:
                return False
            slots[row, cell_of_row] = entry
        a = ndim - 1
        cell[a] += 1
        while a > 0 and cell[a] == n:
            cell[a] = 0
            a -= 1
            cell[a] += 1
    return True


@jit
def gather(data, slots, out):
    """``out[r, p] = data[slots[r, p]]``, zero where a slot is ``-1``."""
    rows, size = slots.shape
    for r in range(rows):
        for p in range(size):
            s = slots[r, p]
            out[r, p] = data[s] if s >= 0 else 0.0


@jit
def apply(p, q, diagonal, tx, ty, tz):
    """``q = A p`` (``p`` padded); returns ``p·q``.

    Each row's dot product is a loop of its own: fused into the first, it kept the
    compiler from vectorising either (twice the time).
    """
    nx, ny, nz = q.shape
    total = 0.0
    for i in range(nx):
        for j in range(ny):
            if nx > 1:
                for k in range(nz):
                    q[i, j, k] = (diagonal[i, j, k] * p[i + 1, j + 1, k + 1]
                                  - _yz_neighbours(p, ty, tz, i, j, k) - _x_neighbours(p, tx, i, j, k))
            else:
                for k in range(nz):
                    q[i, j, k] = diagonal[i, j, k] * p[i + 1, j + 1, k + 1] - _yz_neighbours(p, ty, tz, i, j, k)
            row = 0.0
            for k in range(nz):
                row += q[i, j, k] * p[i + 1, j + 1, k + 1]
            total += row
    return total


@jit
def step(x, r, p, q, alpha):
    """CG's update ``x += alpha p``, ``r -= alpha q`` (``x``, ``p`` padded); returns ``r·r``."""
    nx, ny, nz = r.shape
    total = 0.0
    for i in range(nx):
        for j in range(ny):
            for k in range(nz):
                x[i + 1, j + 1, k + 1] += alpha * p[i + 1, j + 1, k + 1]
                r[i, j, k] -= alpha * q[i, j, k]
            row = 0.0
            for k in range(nz):
                row += r[i, j, k] * r[i, j, k]
            total += row
    return total


@jit
def direction_from(p, z, r, previous):
    """CG's ``rz = r·z`` and new direction ``p = z + (rz / previous) p`` (``0`` for ``previous = 0``), ``z`` padded too.

    ``z`` is the preconditioner's padded result, in its precision; returns ``rz``.
    """
    nx, ny, nz = r.shape
    rz = 0.0
    for i in range(nx):
        for j in range(ny):
            row = 0.0
            for k in range(nz):
                row += r[i, j, k] * z[i + 1, j + 1, k + 1]
            rz += row
    beta = rz / previous if previous != 0.0 else 0.0
    for i in range(nx):
        for j in range(ny):
            for k in range(nz):
                p[i + 1, j + 1, k + 1] = z[i + 1, j + 1, k + 1] + beta * p[i + 1, j + 1, k + 1]
    return rz


@jit
def band_factor(diagonal, tx, ty, tz, band):
    """``A = L D Lᵀ`` of a level's matrix in ``band`` ``(N, b + 1)``: ``band[p, b] = D_p``, ``band[p, b - m] = L[p, p - m]``.

    ``b`` is the largest cell stride (``ny nz`` in 3-D, ``nz`` in 2-D): the matrix's
    bandwidth, within which ``L`` fills in, so the factor costs ``N b² / 2`` (each row's
    band runs forwards in memory, so the inner products vectorise). No pivoting: exact for
    the SPD levels; where a pivot of an indefinite level falls under ``PIVOT_FLOOR`` times
    its diagonal it is raised to that (``L D Lᵀ`` is then a nearby matrix, still a good
    coarse correction; the Krylov method makes up the difference). Returns how many were raised.
    """
    nx, ny, nz = diagonal.shape
    size, b = band.shape[0], band.shape[1] - 1
    band[:] = 0.0
    for i in range(nx):
        for j in range(ny):
            for k in range(nz):
                p = (i * ny + j) * nz + k
                band[p, b] = diagonal[i, j, k]
                if k > 0:
                    band[p, b - 1] = -tz[i, j, k]
                if j > 0:
                    band[p, b - nz] = -ty[i, j, k]
                if i > 0:
                    band[p, b - ny * nz] = -tx[i, j, k]
    scaled = np.empty(b)  # scaled[t] = L[p, p - b + t] D_{p - b + t} for the row being factored
    raised = 0
    for p in range(size):
        first = max(0, b - p)  # the row's first column inside the matrix, as a band position
        for t in range(first, b):  # L[p, q] at q = p - b + t; the columns r < q of both rows sit at s = t - (q - r)
            q = p - b + t
            total = band[p, t]
            for s in range(first, t):
                total -= scaled[s] * band[q, b - t + s]
            scaled[t] = total
            band[p, t] = total / band[q, b]
        pivot = band[p, b]
        for t in range(first, b):
            pivot -= scaled[t] * band[p, t]
        floor = PIVOT_FLOOR * abs(band[p, b])
        if abs(pivot) < floor:
            pivot = floor if pivot >= 0 else -floor
            raised += 1
        band[p, b] = pivot
    return raised


@jit
def band_solve(band, f, u):
    """``u = A⁻¹ f`` from :func:`band_factor`'s ``band`` (float64 inside), ``u`` padded."""
    nx, ny, nz = f.shape
    size, b = band.shape[0], band.shape[1] - 1
    y = np.empty(size)
    p = 0
    for i in range(nx):
        for j in range(ny):
            for k in range(nz):
                y[p] = f[i, j, k]
                p += 1
    for p in range(size):  # L y = f
        first = max(0, b - p)
        total = y[p]
        for t in range(first, b):
            total -= band[p, t] * y[p - b + t]
        y[p] = total
    for p in range(size):
        y[p] /= band[p, b]
    for p in range(size - 1, 0, -1):  # Lᵀ u = D⁻¹ y: row p's column of Lᵀ done, pass it on
        first = max(0, b - p)
        value = y[p]
        for t in range(first, b):
            y[p - b + t] -= band[p, t] * value
    p = 0
    for i in range(nx):
        for j in range(ny):
            for k in range(nz):
                u[i + 1, j + 1, k + 1] = y[p]
                p += 1
