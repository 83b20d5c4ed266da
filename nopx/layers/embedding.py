"""Positional grid embedding: append the coordinates of each grid point as channels.

On an axis of ``n`` points the coordinate is ``linspace(0, 1, n + 1)[:-1]`` — the periodic
grid without its endpoint, as neuraloperator's ``GridEmbeddingND`` — so the same point of
the domain gets the same coordinate at every resolution. The coordinates are rebuilt from
the input's shape on each call.

>>> import jax.numpy as jnp
>>> y = append_grid(jnp.zeros((1, 4, 1)))          # (B, n, C) -> (B, n, C + 1)
>>> y[0, :, 1].tolist()
[0.0, 0.25, 0.5, 0.75]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def grid_coordinates(spatial_shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """``(*spatial_shape, d)``: the coordinate in ``[0, 1)`` of every point along each axis."""
    axes = [jnp.arange(n, dtype=dtype) / n for n in spatial_shape]
    return jnp.stack(jnp.meshgrid(*axes, indexing="ij"), axis=-1)


def append_grid(x: jax.Array) -> jax.Array:
    """``(B, *spatial, C) -> (B, *spatial, C + d)``: the input channels, then the coordinates."""
    grid = grid_coordinates(x.shape[1:-1], x.dtype)
    return jnp.concatenate([x, jnp.broadcast_to(grid, (*x.shape[:-1], grid.shape[-1]))], axis=-1)
