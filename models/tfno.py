r"""The Tensorized FNO (Kossaifi et al., TMLR 2024): an FNO with low-rank spectral weights.

A TFNO is an :class:`~nopx.models.FNO` built with a factorized spectral weight —
``FNO(..., factorization="tucker", rank=0.1)``; this class only changes those defaults. Each
block's complex spectral weight
:math:`W_\ell \in \mathbb{C}^{k_1 \times \dots \times k_d \times C \times C}` is stored as a
CP, Tucker or TT factorization (:mod:`nopx.layers.factorized`) with ``rank`` a fraction of
the dense count, per layer, or ``joint_factorization=True``: one factorized tensor
:math:`W \in \mathbb{C}^{L \times k_1 \dots k_d \times C \times C}` for the whole stack, layer
:math:`\ell` using the slice :math:`W[\ell]` (the paper's "global" form, the one behind its
largest compressions; neuraloperator 2.x only factorizes per layer). The factors are the
parameters ``blocks/ℓ/conv/weight/{real,imag}/k`` (a joint tensor's under ``blocks/0``).

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

from nopx.layers.factorized import Factorization, Rank
from nopx.models.fno import FNO
from nopx.models.registry import register


@register("tfno")
class TFNO(FNO):
    """An FNO with factorized spectral weights: ``(B, *n, C_in) -> (B, *n, C_out)``.

    ``TFNO(...)`` is ``FNO(..., factorization="tucker", rank=0.1)``: only the defaults differ.

    Args:
      in_channels, out_channels, n_modes, hidden_channels, n_layers: as for
        :class:`~nopx.models.FNO`; every other keyword of the FNO is accepted too, notably
        ``joint_factorization`` (one factorized tensor ``(n_layers, *kept, C, C)`` for all
        blocks) and ``implementation`` (``"auto"``, ``"reconstructed"``, ``"factorized"``).
      factorization: ``"tucker"`` (default), ``"cp"``, ``"tt"`` or ``"dense"`` (an FNO).
      rank: fraction of the dense spectral parameter count, or explicit ranks.
      rngs: random streams (``None``: ``nnx.Rngs(0)``).

    >>> import jax.numpy as jnp
    >>> model = TFNO(1, 1, n_modes=(8, 8), hidden_channels=16, rank=0.1)
    >>> model(jnp.ones((2, 32, 32, 1))).shape
    (2, 32, 32, 1)
    >>> model.blocks[0].conv.weight.factorization
    'tucker'
    """

    def __init__(self, in_channels: int, out_channels: int, n_modes: Sequence[int],
                 hidden_channels: int, n_layers: int = 4, *,
                 factorization: Factorization = "tucker", rank: Rank = 0.1,
                 rngs: nnx.Rngs | None = None, **fno_kwargs: Any) -> None:
        super().__init__(in_channels, out_channels, n_modes, hidden_channels, n_layers,
                         factorization=factorization, rank=rank, rngs=rngs, **fno_kwargs)


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
