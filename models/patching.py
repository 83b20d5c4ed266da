r"""Multigrid domain decomposition (MG-TFNO, Kossaifi et al. 2024) around any grid model.

The domain is cut into :math:`P = 2^\ell` patches per axis (:math:`P^d` in all). Each patch
sees its own cells plus a border of ``p = round(padding_fraction · n)`` cells per side
(periodic wrap at the domain edge), and, as extra channels, windows of the same pixel size
centred on it in :math:`\ell` coarser copies of the whole input (subsampled by
:math:`2^j`, :math:`j = 1..\ell`): each covers :math:`2^j` times the patch's extent at
:math:`1/2^j` the resolution, global context at little cost. The wrapped model runs on all
patches of a batch as one batch; its outputs lose their borders and are stitched back.

.. code-block:: text

    x (B, *n, C) ─ patch ─ (B·P^d, *(n/P + 2p), C·(ℓ+1)) ─ model ─ crop ─ (B·P^d, *n/P, C_out)
                 ─ stitch ─ (B, *n, C_out)

The call always returns the whole field. ``stitching=False`` declares per-patch training
(:attr:`MultigridPatching.trains_per_patch`): ``nopx train`` then compares the cropped
patches (:meth:`MultigridPatching.patches`) with the target cut the same way
(:meth:`MultigridPatching.patch_target`), patch by patch, while validation, test, ``nopx
eval`` and predictions use the stitched field of the same weights. The patches are then
independent samples: for a loss that is a mean of per-cell errors (MSE) the per-patch loss
equals the whole-field loss; a relative loss becomes the mean of per-patch relative errors,
each patch weighted alike. A step's activation memory is that of the patches it holds at
once, so a per-patch step runs its ``B·P^d`` patches in ``patch_groups`` groups one after
another (:meth:`MultigridPatching.group`; default: ``P^d`` groups of one patch position of
every field), accumulating the loss and gradient: the same step, for about ``1/P^d`` of the
memory (``bench/RESULTS.md``: a train step on 8 fields of 128² needs 3.9x less temporary
memory than a stitched one at 4 patches, 13.8x at 16; all patches at once, as much).

Works in 1-3 D (neuraloperator: 2-D only). Each axis length must be divisible by
:math:`P \cdot 2^\ell = 4^\ell` (the coarsest windows move by whole coarse cells).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def _window_indices(n: int, levels: int, level: int, pad: int) -> np.ndarray:
    """``(P, n/P + 2·pad)`` cell indices, on the grid subsampled by ``2^level``, of each window.

    Window ``i`` is centred on patch ``i`` (cells ``i·s .. (i+1)·s - 1`` of the fine grid,
    ``s = n/P``) and wraps around periodically.
    """
    patches, factor = 2 ** levels, 2 ** level
    size = n // patches
    shift = size * (factor - 1) // (2 * factor)        # centre a window of size+2·pad cells
    starts = np.arange(patches) * size // factor - pad - shift
    return (starts[:, None] + np.arange(size + 2 * pad)[None, :]) % (n // factor)


def _cut(x: jax.Array, indices: Sequence[np.ndarray]) -> jax.Array:
    """``(B, *n, C)`` and per-axis ``(P, w_k)`` indices → ``(B·P^d, *w, C)`` windows."""
    d = len(indices)
    for axis, index in enumerate(indices):
        x = jnp.take(x, index, axis=1 + 2 * axis)      # axis -> (P, w_k)
    order = [0, *range(1, 2 * d, 2), *range(2, 2 * d + 1, 2), 2 * d + 1]
    x = x.transpose(order)
    return x.reshape(-1, *x.shape[d + 1:])


def check_levels(levels: int) -> None:
    """``ValueError`` unless ``levels`` is a non-negative int."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 0:
        raise ValueError(f"levels must be a non-negative integer, got {levels!r}")


class MultigridPatching(nnx.Module):
    """Run ``model`` on multigrid patches: ``(B, *n, C) -> (B, *n, C_out)`` (module docstring).

    Args:
      model: any grid model ``(B', *m, C·(levels+1)) -> (B', *m, C_out)``.
      levels: ``ℓ``: ``2^ℓ`` patches per axis and ``ℓ`` coarser context levels (0: one patch,
        the model on the padded domain).
      padding_fraction: border of each patch as a fraction of the axis length.
      stitching: ``True``: train on the stitched whole field; ``False``: train per patch
        (:attr:`trains_per_patch`). The call returns the whole field either way.
      patch_groups: per-patch training only: run a step's patches in this many groups, one
        after another (:meth:`n_groups`; ``None``: one group per patch position, ``1``: all
        at once).

    >>> import jax.numpy as jnp
    >>> from nopx.models import FNO
    >>> wrapped = MultigridPatching(FNO(2, 1, (4, 4), 8), levels=1, padding_fraction=0.125)
    >>> wrapped.patch(jnp.ones((3, 16, 16, 1))).shape     # 4 patches of 8+2·2 cells, 2 levels
    (12, 12, 12, 2)
    >>> wrapped(jnp.ones((3, 16, 16, 1))).shape
    (3, 16, 16, 1)
    >>> wrapped.patches(jnp.ones((3, 16, 16, 1))).shape     # cropped: 8x8 cells per patch
    (12, 8, 8, 1)
    """

    def __init__(self, model: nnx.Module, *, levels: int = 1, padding_fraction: float = 0.078125,
                 stitching: bool = True, patch_groups: int | None = None) -> None:
        check_levels(levels)
        if not 0 <= padding_fraction < 1:
            raise ValueError(f"padding_fraction must be in [0, 1), got {padding_fraction!r}")
        if patch_groups is not None:
            if isinstance(patch_groups, bool) or not isinstance(patch_groups, int) \
                    or patch_groups < 1:
                raise ValueError(f"patch_groups must be a positive integer, got {patch_groups!r}")
            if stitching:
                raise ValueError("patch_groups splits per-patch training (stitching: false); "
                                 "with stitching the step trains on whole fields")
        self.model = model
        self.levels = levels
        self.padding_fraction = padding_fraction
        self.stitching = stitching
        self.patch_groups = patch_groups

    @property
    def trains_per_patch(self) -> bool:
        """Whether the training loss is per patch (``stitching=False``): the step compares
        :meth:`patches` with :meth:`patch_target` (:func:`nopx.training.tasks.trains_per_patch`)."""
        return not self.stitching

    @property
    def n_patches(self) -> int:
        """Patches per axis, ``2^levels``."""
        return 2 ** self.levels

    def n_groups(self, ndim: int) -> int:
        """How many groups of patches a per-patch train step runs one after another on an
        ``ndim``-D grid: ``patch_groups``, by default one per patch position (``P^d``).

        ``ValueError`` unless it divides the ``P^d`` patches of a field.
        """
        count = self.n_patches ** ndim
        groups = count if self.patch_groups is None else self.patch_groups
        if count % groups:
            raise ValueError(f"patch_groups={groups} must divide the {count} patches of a "
                             f"{ndim}-D field at levels={self.levels}: a power of two up to "
                             f"{count} (1: all patches at once)")
        return groups

    def check_grid(self, spatial_shape: Sequence[int]) -> None:
        """``ValueError`` unless every axis is divisible by ``4^levels``."""
        multiple = 4 ** self.levels
        if any(n % multiple for n in spatial_shape):
            raise ValueError(f"multigrid patching with levels={self.levels} needs every axis "
                             f"divisible by {multiple}; got grid {tuple(spatial_shape)}")

    def pads(self, spatial_shape: Sequence[int]) -> tuple[int, ...]:
        """Border cells per axis, ``round(padding_fraction · n)``."""
        self.check_grid(spatial_shape)
        return tuple(round(self.padding_fraction * n) for n in spatial_shape)

    def patch(self, x: jax.Array) -> jax.Array:
        """``(B, *n, C) -> (B·P^d, *(n/P + 2p), C·(levels+1))``: windows at every level."""
        grid = x.shape[1:-1]
        pads = self.pads(grid)
        windows = []
        for level in range(self.levels + 1):
            step = 2 ** level
            coarse = x[(slice(None), *[slice(None, None, step)] * len(grid))]
            windows.append(_cut(coarse, [_window_indices(n, self.levels, level, p)
                                         for n, p in zip(grid, pads)]))
        return jnp.concatenate(windows, axis=-1)

    def crop(self, y: jax.Array, spatial_shape: Sequence[int]) -> jax.Array:
        """``(B·P^d, *(n/P + 2p), C) -> (B·P^d, *n/P, C)``: drop each patch's border."""
        pads = self.pads(spatial_shape)
        index = [slice(p, p + n // self.n_patches) for n, p in zip(spatial_shape, pads)]
        return y[(slice(None), *index, slice(None))]

    def stitch(self, y: jax.Array) -> jax.Array:
        """``(B·P^d, *s, C) -> (B, *(P·s), C)``: tile the cropped patches."""
        d, patches = y.ndim - 2, self.n_patches
        tiles = y.reshape(-1, *[patches] * d, *y.shape[1:])
        order = [0, *[i for k in range(d) for i in (1 + k, 1 + d + k)], 2 * d + 1]
        tiles = tiles.transpose(order)
        return tiles.reshape(tiles.shape[0], *[patches * s for s in y.shape[1:-1]], y.shape[-1])

    def patch_target(self, y: jax.Array) -> jax.Array:
        """``(B, *n, C) -> (B·P^d, *n/P, C)``: a target cut like the stitched output."""
        d, patches = y.ndim - 2, self.n_patches
        self.check_grid(y.shape[1:-1])
        split = y.reshape(y.shape[0], *[i for n in y.shape[1:-1] for i in (patches, n // patches)],
                          y.shape[-1])
        split = split.transpose([0, *range(1, 2 * d, 2), *range(2, 2 * d + 1, 2), 2 * d + 1])
        return split.reshape(-1, *split.shape[d + 1:])

    def group(self, patches: jax.Array) -> jax.Array:
        """``(B·P^d, ...) -> (G, B·P^d/G, ...)``, ``G`` = :meth:`n_groups`: patches (windows,
        outputs or targets) of ``(B, *n)`` fields in groups, group ``g`` holding positions
        ``g·P^d/G .. (g+1)·P^d/G - 1`` of every field, field by field.

        Every group holds the same share of every field, so a batch split over devices
        splits each group the same way.
        """
        groups = self.n_groups(patches.ndim - 2)
        per_field = patches.reshape(-1, groups, self.n_patches ** (patches.ndim - 2) // groups,
                                    *patches.shape[1:])
        return per_field.swapaxes(0, 1).reshape(groups, -1, *patches.shape[1:])

    def patch_outputs(self, windows: jax.Array, spatial_shape: Sequence[int]) -> jax.Array:
        """``(B', *(n/P + 2p), C') -> (B', *n/P, C_out)``: the model on windows cut by
        :meth:`patch` from ``spatial_shape`` fields, borders cropped."""
        return self.crop(self.model(windows), spatial_shape)

    def patches(self, x: jax.Array) -> jax.Array:
        """``(B, *n, C) -> (B·P^d, *n/P, C_out)``: the model on every patch, borders cropped."""
        return self.patch_outputs(self.patch(x), x.shape[1:-1])

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, *n, C) -> (B, *n, C_out)``: the stitched :meth:`patches`."""
        return self.stitch(self.patches(x))

