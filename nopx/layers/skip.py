"""Skip connections of the FNO block, channels-last ``(B, *spatial, C)``.

* ``"linear"``: a 1×1 convolution without bias, ``C_in -> C_out`` (neuraloperator's default
  FNO skip);
* ``"soft-gating"``: a learned per-channel gain ``w ⊙ x``, ``w`` starting at 1, no bias
  (the default channel-MLP skip; needs ``C_in == C_out``);
* ``"identity"``: ``x`` itself (needs ``C_in == C_out``);
* ``None``: no skip.

>>> import jax.numpy as jnp
>>> gate = make_skip("soft-gating", 4, 4, rngs=nnx.Rngs(0))
>>> gate(jnp.ones((1, 8, 4))).sum().item()
32.0
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from nopx.layers.channel_mlp import channel_linear
from nopx.layers.checks import check_choice, check_positive

SKIP_KINDS = ("linear", "soft-gating", "identity", None)


class SoftGating(nnx.Module):
    """``(..., C) -> (..., C)``, ``y = w ⊙ x`` with one gain per channel (``w`` starts at 1)."""

    def __init__(self, channels: int, *, param_dtype: jnp.dtype = jnp.float32) -> None:
        check_positive(channels=channels)
        self.weight = nnx.Param(jnp.ones((channels,), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.weight[...]


def _identity(x: jax.Array) -> jax.Array:
    return x


def make_skip(kind: str | None, in_channels: int, out_channels: int, *, rngs: nnx.Rngs,
              name: str = "skip") -> Callable[[jax.Array], jax.Array] | None:
    """The skip connection ``kind`` (module docstring); ``None`` for no skip.

    ``name`` is the argument name used in error messages (``fno_skip``, ``channel_mlp_skip``).
    """
    check_choice(name, kind, SKIP_KINDS)
    if kind in ("soft-gating", "identity") and in_channels != out_channels:
        raise ValueError(f"{name}={kind!r} needs as many input as output channels, "
                         f"got {in_channels} -> {out_channels}")
    if kind == "linear":
        return channel_linear(in_channels, out_channels, use_bias=False, rngs=rngs)
    if kind == "soft-gating":
        return SoftGating(in_channels)
    return _identity if kind == "identity" else None
