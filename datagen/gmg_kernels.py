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
def smooth(u, f, inverse_diagonal, tx, ty, tz, colours, from_zero):
    """Red-black Gauss–Seidel on ``u``: one half-sweep per colour of ``colours`` (``(0, 1)`` or ``(1, 0)``).

    A colour's cells depend only on the other colour, so each row is computed in full and
    blended into ``u`` through 0/1 masks: both loops vectorise (a strided store of the
    colour's half cost as much as computing the row). ``from_zero``: ``u``'s interior is
    taken as zero, so the first half-sweep is ``D⁻¹ f`` on its colour, zero on the other.
    """
    nx, ny, nz = f.shape
    row = np.empty(nz, f.dtype)
    odd = np.empty((2, nz), f.dtype)  # odd[c, k] = 1 where (k + c) is odd: the cells a colour-c row keeps
    for k in range(nz):
        odd[0, k], odd[1, k] = k % 2, 1 - k % 2
    for sweep, colour in enumerate(colours):
        for i in range(nx):
            for j in range(ny):
                parity = (i + j + colour) % 2
                if from_zero and sweep == 0:
                    take = odd[1 - parity]
                    for k in range(nz):
                        u[i + 1, j + 1, k + 1] = take[k] * (inverse_diagonal[i, j, k] * f[i, j, k])
                    continue
                if nx > 1:
                    for k in range(nz):
                        row[k] = inverse_diagonal[i, j, k] * (
                            f[i, j, k] + _yz_neighbours(u, ty, tz, i, j, k) + _x_neighbours(u, tx, i, j, k))
                else:
                    for k in range(nz):
                        row[k] = inverse_diagonal[i, j, k] * (f[i, j, k] + _yz_neighbours(u, ty, tz, i, j, k))
                keep, take = odd[parity], odd[1 - parity]
                for k in range(nz):
                    u[i + 1, j + 1, k + 1] = keep[k] * u[i + 1, j + 1, k + 1] + take[k] * row[k]


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


@inline
def _interpolation(j, coarse_n, fine_n):
    """Fine cell ``j``'s two coarse cells and weights along one axis: ``(a, b, w_a, w_b)``.

    ¾ of its own coarse cell and ¼ of the neighbour on its side; past a wall the neighbour
    is the ghost ``-c`` (zero Dirichlet), so the wall cell takes ½ of its own. An axis that
    is not refined (``fine_n == coarse_n``) copies.
    """
    if fine_n == coarse_n:
        return j, j, 1.0, 0.0
    own = j // 2
    other = own - 1 if j % 2 == 0 else own + 1
    if other < 0 or other >= coarse_n:
        return own, own, 0.5, 0.0
    return own, other, 0.75, 0.25


@jit
def prolong_add(coarse, u):
    """``u += P coarse`` for padded ``coarse`` and ``u``: interpolated along every axis on which ``u`` is the longer.

    Row by row: the two (four in 3-D) coarse rows under a fine row are blended into one
    coarse-length line, which is then spread along the last axis.
    """
    nx, ny, nz = u.shape[0] - 2, u.shape[1] - 2, u.shape[2] - 2
    cx, cy, cz = coarse.shape[0] - 2, coarse.shape[1] - 2, coarse.shape[2] - 2
    line = np.empty(cz, u.dtype)
    real = line.dtype.type  # weights in the arrays' precision, so the row loops stay in it
    three_quarters, quarter, half = real(0.75), real(0.25), real(0.5)
    for i in range(nx):
        ia, ib, wia, wib = _interpolation(i, cx, nx)
        for j in range(ny):
            ja, jb, wja, wjb = _interpolation(j, cy, ny)
            w_aa, w_ab, w_ba, w_bb = real(wia * wja), real(wia * wjb), real(wib * wja), real(wib * wjb)
            for c in range(cz):
                line[c] = (w_aa * coarse[ia + 1, ja + 1, c + 1] + w_ab * coarse[ia + 1, jb + 1, c + 1]
                           + w_ba * coarse[ib + 1, ja + 1, c + 1] + w_bb * coarse[ib + 1, jb + 1, c + 1])
            out = u[i + 1, j + 1]
            if nz == cz:
                for k in range(nz):
                    out[k + 1] += line[k]
            else:
                out[1] += half * line[0]
                out[nz] += half * line[cz - 1]
                for c in range(cz - 1):  # the fine cells 2c + 1 and 2c + 2, between coarse centres c and c + 1
                    out[2 * c + 2] += three_quarters * line[c] + quarter * line[c + 1]
                    out[2 * c + 3] += quarter * line[c] + three_quarters * line[c + 1]


@inline
def _restriction_weight(j, c, coarse_n, fine_n):
    """``P[j, c] / 2`` along one refined axis (``1`` on an axis that is not)."""
    if fine_n == coarse_n:
        return 1.0
    a, b, w_a, w_b = _interpolation(j, coarse_n, fine_n)
    return 0.5 * ((w_a if a == c else 0.0) + (w_b if b == c else 0.0))


@jit
def restrict(fine, coarse):
    """``coarse = R fine = Pᵀ fine / 2^d`` (unpadded; ``d`` the axes ``fine`` is longer along): :func:`prolong_add`'s adjoint, scaled.

    Per coarse row: the fine rows over it, weighted (at most 4 by 4 in 3-D), summed into
    one fine-length line, which is then condensed along the last axis.
    """
    nx, ny, nz = fine.shape
    cx, cy, cz = coarse.shape
    line = np.empty(nz, fine.dtype)
    real = line.dtype.type  # constants in the arrays' precision, so the row loops stay in it
    quarter, three_eighths, eighth = real(0.25), real(0.375), real(0.125)
    for ci in range(cx):
        for cj in range(cy):
            line[:] = 0.0
            for i in range(max(0, 2 * ci - 1), min(nx, 2 * ci + 3) if nx > cx else ci + 1):
                wx = _restriction_weight(i, ci, cx, nx)
                for j in range(max(0, 2 * cj - 1), min(ny, 2 * cj + 3) if ny > cy else cj + 1):
                    w = real(wx * _restriction_weight(j, cj, cy, ny))
                    if w != 0.0:
                        for k in range(nz):
                            line[k] += w * fine[i, j, k]
            out = coarse[ci, cj]
            if nz == cz:
                out[:] = line
            else:
                out[0] = quarter * line[0] + three_eighths * line[1] + eighth * line[2]
                out[cz - 1] = eighth * line[nz - 3] + three_eighths * line[nz - 2] + quarter * line[nz - 1]
                for c in range(1, cz - 1):
                    out[c] = three_eighths * (line[2 * c] + line[2 * c + 1]) + eighth * (line[2 * c - 1] + line[2 * c + 2])


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
        smooth(u, f, inverses[level], txs[level], tys[level], tzs[level], (0, 1), level > start or not keep)
        residual(u, f, diagonals[level], txs[level], tys[level], tzs[level], r)
        restrict(r, fs[level + 1])


@jit
def ascend(us, fs, inverses, txs, tys, tzs, start, stop):
    """The way up from level ``stop`` (its solution in ``us[stop]``) to ``start``: add the interpolated correction, post-smooth."""
    for level in range(stop - 1, start - 1, -1):
        prolong_add(us[level + 1], us[level])
        smooth(us[level], fs[level], inverses[level], txs[level], tys[level], tzs[level], (1, 0), False)


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
        restrict(fs[level], fs[level + 1])


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
