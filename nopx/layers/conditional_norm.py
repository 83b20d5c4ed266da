"""Layer normalisation over channels whose scale and shift are functions of a lead time t.

.. math::

    y = \\gamma(t) \\odot \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\varepsilon}} + \\beta(t),
    \\qquad \\gamma(t) = w_\\gamma t + b_\\gamma, \\quad \\beta(t) = w_\\beta t + b_\\beta,

with the mean :math:`\\mu` and variance :math:`\\sigma^2` taken over the channel axis of each
token, and :math:`w, b \\in \\mathbb{R}^C`: two ``Linear(1 → C)`` maps of the scalar time, as
Poseidon's ``ConditionalLayerNorm`` (Herde et al. 2024). Because γ and β are affine in t
the model is continuous in t and can be evaluated between the recorded time steps.

Initialisation: :math:`w_\\gamma, w_\\beta \\sim N(0, 0.02^2)` as in Poseidon, but
:math:`b_\\gamma = 1` (Poseidon: 0) and :math:`b_\\beta = 0`, so a new layer is close to a
plain LayerNorm at every t of order one instead of scaling everything by about
:math:`0.02\\,t` (Poseidon's γ(0) = 0 makes a fresh model ignore its input at t = 0).
The layout of the parameters is Poseidon's, so its checkpoints load.

With ``conditioned=False`` the layer is an ordinary LayerNorm with a learned per-channel
scale and shift (``2C`` parameters instead of ``4C``), and ``t`` is ignored.

>>> import jax.numpy as jnp
>>> norm = ConditionalLayerNorm(3, rngs=nnx.Rngs(0))
>>> y = norm(jnp.arange(12.0).reshape(2, 2, 3), jnp.array([0.0, 0.5]))   # (B, ..., C), t (B,)
>>> [round(float(v), 4) for v in y[0, 0]]
[-1.2247, 0.0, 1.2247]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class ConditionalLayerNorm(nnx.Module):
    """LayerNorm of ``(B, ..., C)`` with a scale and shift affine in the lead time ``t (B,)``."""

    def __init__(self, num_features: int, *, conditioned: bool = True, epsilon: float = 1e-5,
                 rngs: nnx.Rngs) -> None:
        self.conditioned = conditioned
        self.epsilon = epsilon
        if conditioned:
            slope = nnx.initializers.normal(0.02)
            self.scale = nnx.Linear(1, num_features, kernel_init=slope,
                                    bias_init=nnx.initializers.ones_init(), rngs=rngs)
            self.shift = nnx.Linear(1, num_features, kernel_init=slope,
                                    bias_init=nnx.initializers.zeros_init(), rngs=rngs)
        else:
            self.norm = nnx.LayerNorm(num_features, epsilon=epsilon, rngs=rngs)

    def __call__(self, x: jax.Array, t: jax.Array | None = None) -> jax.Array:
        """``(B, ..., C)``, ``t (B,)`` → ``(B, ..., C)``."""
        if not self.conditioned:
            return self.norm(x)
        if t is None:
            raise ValueError("a time-conditioned layer norm needs the lead time t, shape (batch,)")
        mean = x.mean(axis=-1, keepdims=True)
        var = jnp.square(x - mean).mean(axis=-1, keepdims=True)
        normed = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        t = jnp.reshape(t, (-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)  # (B, 1, ..., 1)
        return self.scale(t) * normed + self.shift(t)
