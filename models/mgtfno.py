r"""MG-TFNO (Kossaifi et al., TMLR 2024): a jointly factorized TFNO on multigrid patches.

An :class:`~nopx.models.FNO` with one Tucker tensor for all layers' spectral weights
(``FNO(..., factorization="tucker", rank=0.05, joint_factorization=True)``: a jointly
factorized TFNO), run by :class:`~nopx.models.MultigridPatching` on :math:`2^{\ell d}`
patches, each with :math:`\ell` coarser context levels as extra input channels (the inner
FNO gets ``in_channels·(levels+1)`` channels). Per patch :math:`p` with input window
:math:`x_p` and coarse windows :math:`x_p^{(j)}` of :math:`x` subsampled by :math:`2^j`:

.. math::
    u_p = \mathrm{crop}\,\mathcal{G}_\theta\big([x_p, x_p^{(1)}, \dots, x_p^{(\ell)}]\big),
    \qquad u = \mathrm{stitch}(u_1, \dots, u_{P^d}),

:math:`\mathcal{G}_\theta` the factorized FNO shared by all patches.

Training: ``stitching: true`` (default) puts the loss on the stitched field;
``stitching: false`` (``model: {name: mgtfno, stitching: false}``) puts it on each patch
against the target cut the same way (:class:`~nopx.models.MultigridPatching`), a step
running the patches in ``patch_groups`` groups one after another (default: one group per
patch position, for about ``1/P^d`` of the activation memory); evaluation is on the whole
field either way.

Patches wrap around periodically and a patch alone cannot tell where in the domain it is;
``global_grid=True`` (default) appends the domain coordinates in [0, 1) to the input before
patching (``d`` more channels per level), which a non-periodic problem needs: on Darcy
(32², 2×2 patches, 8 epochs) the test error fell from 40% without to 8.0% with.

Good values (the paper, 2-D Navier-Stokes at 128²-1024²): ``levels`` 1-2 (4-16 patches),
``padding_fraction`` 0.078125, Tucker ``rank`` 0.02-0.1 of the whole stack; grids
divisible by ``4^levels``. Train and evaluate with the same ``levels`` and padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
from flax import nnx

from nopx.layers import append_grid
from nopx.layers.factorized import Factorization, Rank
from nopx.models.fno import FNO
from nopx.models.patching import MultigridPatching, check_levels
from nopx.models.registry import register
from nopx.models.tfno import signature_with_keywords_of


@register("mgtfno")
class MGTFNO(MultigridPatching):
    """A TFNO on multigrid patches: ``(B, *n, C_in) -> (B, *n, C_out)``.

    Args:
      in_channels, out_channels, n_modes, hidden_channels, n_layers: as for
        :class:`~nopx.models.FNO` (``n_modes`` must fit a patch: ``n/2^levels + 2p`` cells);
        every other FNO keyword is accepted too.
      levels, padding_fraction: as for :class:`~nopx.models.MultigridPatching`.
      stitching: ``False`` trains per patch (:attr:`~MultigridPatching.trains_per_patch`).
      patch_groups: per-patch training runs a step's patches in this many groups, one after
        another (default: one per patch position; 1: all at once).
      global_grid: append the domain coordinates before patching (see above).
      factorization, rank, joint_factorization: the spectral weights (joint Tucker by
        default).
      rngs: random streams (``None``: ``nnx.Rngs(0)``).

    >>> import jax.numpy as jnp
    >>> model = MGTFNO(1, 1, n_modes=(4, 4), hidden_channels=8, levels=1)
    >>> model.model.in_channels, model(jnp.ones((2, 16, 16, 1))).shape     # (1 + 2) x 2 levels
    (6, (2, 16, 16, 1))
    """

    # The wrapped FNO's rules (its parameters sit under "model/").
    sharding_rules = FNO.sharding_rules

    def __init__(self, in_channels: int, out_channels: int, n_modes: Sequence[int],
                 hidden_channels: int, n_layers: int = 4, *, levels: int = 1,
                 padding_fraction: float = 0.078125, stitching: bool = True,
                 patch_groups: int | None = None, global_grid: bool = True,
                 factorization: Factorization = "tucker", rank: Rank = 0.05,
                 joint_factorization: bool = True, rngs: nnx.Rngs | None = None,
                 **fno_kwargs: Any) -> None:
        check_levels(levels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.global_grid = global_grid
        patch_channels = in_channels + (len(n_modes) if global_grid else 0)
        inner = FNO(patch_channels * (levels + 1), out_channels, n_modes, hidden_channels,
                    n_layers, factorization=factorization, rank=rank,
                    joint_factorization=joint_factorization, rngs=rngs, **fno_kwargs)
        super().__init__(inner, levels=levels, padding_fraction=padding_fraction,
                         stitching=stitching, patch_groups=patch_groups)
        self.n_groups(len(n_modes))                 # a bad patch_groups fails at build time

    def patch(self, x: jax.Array) -> jax.Array:
        """``(B, *n, C) -> (B·P^d, *(n/P + 2p), (C [+ d])·(levels+1))``."""
        return super().patch(append_grid(x) if self.global_grid else x)


MGTFNO.__init__.__signature__ = signature_with_keywords_of(MGTFNO, FNO)
