"""Domain padding: zero-pad every spatial axis on both sides, and cut the padding off again.

Spectral layers assume periodic data; padding a non-periodic field (Darcy) by a fraction of
the domain gives the wrap-around somewhere harmless to go. The pad width on an axis of ``n``
points is ``round(fraction·n)`` (Python rounding, as neuraloperator), so it scales with the
resolution. Arrays are channels-last ``(B, *spatial, C)``.

>>> import jax.numpy as jnp
>>> x = jnp.ones((2, 12, 20, 3))
>>> padded, pads = pad_domain(x, 0.25)
>>> padded.shape, pads
((2, 18, 30, 3), (3, 5))
>>> bool((unpad_domain(padded, pads) == x).all())
True
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def domain_pads(spatial_shape: Sequence[int], fraction: float | Sequence[float]) -> tuple[int, ...]:
    """Pad width per spatial axis: ``round(fraction·n)`` (``fraction`` scalar or per axis)."""
    fractions = [fraction] * len(spatial_shape) if isinstance(fraction, (int, float)) \
        else list(fraction)
    if len(fractions) != len(spatial_shape) or any(f < 0 for f in fractions):
        raise ValueError(f"domain_padding must be a non-negative fraction or one per spatial "
                         f"axis ({len(spatial_shape)}); got {fraction!r}")
    return tuple(round(f * n) for f, n in zip(fractions, spatial_shape))


def pad_domain(x: jax.Array,
               fraction: float | Sequence[float]) -> tuple[jax.Array, tuple[int, ...]]:
    """``(B, *n, C) -> (B, *(n + 2·pad), C)`` with zeros; also the pad widths to unpad with."""
    pads = domain_pads(x.shape[1:-1], fraction)
    return jnp.pad(x, [(0, 0), *[(p, p) for p in pads], (0, 0)]), pads


def unpad_domain(x: jax.Array, pads: Sequence[int]) -> jax.Array:
    """Remove ``pads[k]`` points from both ends of spatial axis ``k`` of ``(B, *spatial, C)``."""
    index = tuple(slice(p, x.shape[1 + k] - p) for k, p in enumerate(pads))
    return x[(slice(None), *index, slice(None))]
