"""Spatial-axis helpers shared by the losses: arrays are channels-last ``(B, *spatial, C)``.

>>> domain_lengths((1.0, 2.0), 2)
(1.0, 2.0)
>>> domain_lengths(3.0, 2)
(3.0, 3.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax


def spatial_axes(x: jax.Array) -> tuple[int, ...]:
    """The spatial axes of ``(B, *spatial, C)``: ``1 .. x.ndim - 2``."""
    if x.ndim < 3:
        raise ValueError(f"expected (batch, *spatial, channels) with at least one spatial "
                         f"axis, got shape {x.shape}")
    return tuple(range(1, x.ndim - 1))


def domain_lengths(domain: float | Sequence[float], ndim: int) -> tuple[float, ...]:
    """Side lengths of the periodic domain, one per spatial axis (a scalar applies to all)."""
    lengths = (domain,) * ndim if isinstance(domain, (int, float)) else tuple(domain)
    if len(lengths) != ndim or any(length <= 0 for length in lengths):
        raise ValueError(f"domain must be a positive length or one per spatial axis "
                         f"({ndim}), got {domain!r}")
    return tuple(float(length) for length in lengths)
