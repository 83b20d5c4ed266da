"""Normalisation layers of the FNO block, by neuraloperator's names, channels-last.

* ``"instance_norm"``: per sample and channel over the spatial axes, no affine parameters
  (PyTorch ``InstanceNorm``);
* ``"group_norm"``: one group, i.e. per sample over channels and space, with a learned
  per-channel scale and bias (PyTorch ``GroupNorm(1, C)``);
* ``None``: no normalisation.

Both use ε = 1e-5 like PyTorch.

>>> import jax.numpy as jnp
>>> norm = make_norm("instance_norm", 2, rngs=nnx.Rngs(0))
>>> y = norm(jnp.arange(16.0).reshape(1, 8, 2))
>>> [round(float(v), 4) for v in y.mean(axis=1)[0]]
[0.0, 0.0]
"""

from __future__ import annotations

from flax import nnx

from nopx.layers.checks import check_choice

NORMS = (None, "instance_norm", "group_norm")


def make_norm(kind: str | None, channels: int, *, rngs: nnx.Rngs) -> nnx.GroupNorm | None:
    """The normalisation ``kind`` for ``channels`` channels; ``None`` for none."""
    check_choice("norm", kind, NORMS)
    if kind is None:
        return None
    per_channel = kind == "instance_norm"
    return nnx.GroupNorm(channels, num_groups=channels if per_channel else 1, epsilon=1e-5,
                         use_scale=not per_channel, use_bias=not per_channel, rngs=rngs)
