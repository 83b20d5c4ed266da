r"""The Tensorized FNO (Kossaifi et al., TMLR 2024): an FNO with low-rank spectral weights.

A TFNO is an :class:`~nopx.models.FNO` in every respect — lifting, blocks, skips, domain
padding, projection, the call — except how each block's complex spectral weight
:math:`W_\ell \in \mathbb{C}^{k_1 \times \dots \times k_d \times C \times C}` is stored: as a
CP, Tucker or TT factorization (:mod:`nopx.layers.factorized`) with ``rank`` a fraction of
the dense count, per layer, or ``joint_factorization=True``: one factorized tensor
:math:`W \in \mathbb{C}^{L \times k_1 \dots k_d \times C \times C}` for the whole stack, layer
:math:`\ell` using the slice :math:`W[\ell]` (the paper's "global" form, the one behind its
largest compressions; neuraloperator 2.x only factorizes per layer).

Parameter counts equal neuraloperator 2.0.0's ``TFNO`` (its rank rule, complex counted as 2
reals): 2-D, 1 → 1, ``n_modes=(16, 16)``, 32 hidden channels, 4 layers, Tucker rank 0.1 has
140,521 parameters against the FNO's 1,192,801.

Good values: Tucker (the paper's default) with ``rank`` 0.05-0.1 per layer; the paper
reports jointly factorized stacks compressing far further (its 100x+ headline figures). On
Darcy at 32² (8 epochs, ``bench/RESULTS.md``) a Tucker-0.1 TFNO reached 6.5% test error
against the FNO's 4.2% with 9x fewer parameters. ``implementation="auto"`` contracts the
input with the factors directly when that needs fewer multiply-adds than a rebuild.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from flax import nnx

from nopx.layers import SpectralConv
from nopx.layers.checks import check_choice
from nopx.layers.factorized import FACTORIZATIONS, Factorization, FactorizedTensor, Rank
from nopx.layers.fourier import kept_shape
from nopx.layers.spectral_conv import IMPLEMENTATIONS, Implementation
from nopx.models.fno import FNO
from nopx.models.registry import register


@register("tfno")
class TFNO(FNO):
    """An FNO with factorized spectral weights: ``(B, *n, C_in) -> (B, *n, C_out)``.

    Args:
      in_channels, out_channels, n_modes, hidden_channels, n_layers: as for
        :class:`~nopx.models.FNO`; every other keyword of the FNO is accepted too.
      factorization: ``"tucker"`` (default), ``"cp"``, ``"tt"`` or ``"dense"`` (an FNO).
      rank: fraction of the dense spectral parameter count, or explicit ranks.
      joint_factorization: one factorized tensor ``(n_layers, *kept, C, C)`` for all blocks.
      implementation: ``"auto"``, ``"reconstructed"`` or ``"factorized"``
        (:class:`~nopx.layers.SpectralConv`).
      rngs: random streams (``None``: ``nnx.Rngs(0)``).

    >>> import jax.numpy as jnp
    >>> model = TFNO(1, 1, n_modes=(8, 8), hidden_channels=16, rank=0.1)
    >>> model(jnp.ones((2, 32, 32, 1))).shape
    (2, 32, 32, 1)
    >>> model.blocks[0].conv.weight.factorization
    'tucker'
    """

    # The FNO's rules, and the factors of a factorized spectral weight (CP/Tucker factors
    # (n, rank), Tucker core, TT cores (r, n, r')) along their last rank axis.
    sharding_rules = (*FNO.sharding_rules, (r"conv/weight/(real|imag)/\d+$", -1))

    def __init__(self, in_channels: int, out_channels: int, n_modes: Sequence[int],
                 hidden_channels: int, n_layers: int = 4, *,
                 factorization: Factorization = "tucker", rank: Rank = 0.1,
                 joint_factorization: bool = False, implementation: Implementation = "auto",
                 rngs: nnx.Rngs | None = None, **fno_kwargs: Any) -> None:
        check_choice("factorization", factorization, FACTORIZATIONS)
        check_choice("implementation", implementation, IMPLEMENTATIONS)
        rngs = nnx.Rngs(0) if rngs is None else rngs
        super().__init__(in_channels, out_channels, n_modes, hidden_channels, n_layers,
                         rngs=rngs, **fno_kwargs)
        self.factorization = factorization
        self.joint_factorization = joint_factorization
        if factorization == "dense":
            return
        joint = None
        if joint_factorization:
            shape = (n_layers, *kept_shape(self.n_modes), hidden_channels, hidden_channels)
            joint = FactorizedTensor(shape, factorization, rank,
                                     std=(1.0 / hidden_channels) ** 0.5, rngs=rngs)
        # The FNO built dense convolutions; swap in factorized ones with the same options.
        for layer, block in enumerate(self.blocks):
            dense = block.conv
            block.conv = SpectralConv(
                hidden_channels, hidden_channels, self.n_modes, bias=dense.bias is not None,
                fft_norm=dense.fft_norm, transform=dense.transform, factorization=factorization,
                rank=rank, implementation=implementation, weight=joint,
                layer=layer if joint is not None else None, rngs=rngs)


def signature_with_keywords_of(cls: type, base: type) -> inspect.Signature:
    """``cls.__init__``'s signature with its ``**kwargs`` spelled out as ``base``'s keywords.

    The config layer reads a constructor's signature to name unknown keys; this keeps a
    misspelt FNO option in a ``tfno`` config a clear error.
    """
    own = inspect.signature(cls.__init__).parameters
    inherited = inspect.signature(base.__init__).parameters
    merged = [p for p in own.values() if p.kind is not p.VAR_KEYWORD and p.name != "rngs"]
    merged += [p for name, p in inherited.items() if name not in own and p.kind is p.KEYWORD_ONLY]
    return inspect.Signature([*merged, own["rngs"]])


TFNO.__init__.__signature__ = signature_with_keywords_of(TFNO, FNO)
