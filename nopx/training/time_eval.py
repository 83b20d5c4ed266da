"""A time-conditioned model at any lead time: directly, or autoregressively in chosen steps.

A *predictor* is ``predict(x, t) -> y``: states ``x (B, *spatial, C)`` and lead times
``t (B,)`` to the states ``(B, *spatial, C)`` a time ``t`` later — a time-conditioned model
itself (``ScOT``), or a trained all2all run through :func:`run_predictor`, which takes
physical times and applies the run's normalisation and lead-time unit. Because the lead
time is an input, a predictor answers between the recorded snapshots too.

:func:`predict_at` jumps straight to each requested time; :func:`rollout_with_step`
composes steps of one chosen size (Poseidon's autoregressive inference); comparing the two
over the lead times of a test set is :func:`lead_time_errors`, which ``nopx eval`` reports
for all2all runs.

>>> import jax.numpy as jnp
>>> decay = lambda x, t: x * jnp.exp(-t)[:, None, None]     # an exact semigroup
>>> x0 = jnp.ones((1, 4, 1))
>>> direct = predict_at(decay, x0, [0.5, 1.0])               # (B, times, *spatial, C)
>>> steps = rollout_with_step(decay, x0, 0.5, 2)             # (B, n, *spatial, C)
>>> bool(jnp.allclose(direct, steps))
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nopx import losses

Predictor = Callable[[jax.Array, jax.Array], jax.Array]


def predict_at(predict: Predictor, x0: jax.Array, times: Sequence[float]) -> jax.Array:
    """``(B, len(times), *spatial, C)``: ``predict(x0, t)`` for each lead time ``t``."""
    x0 = jnp.asarray(x0)
    return jnp.stack([predict(x0, jnp.full(x0.shape[:1], t, x0.dtype)) for t in times], axis=1)


def rollout_with_step(predict: Predictor, x0: jax.Array, step: float, n: int) -> jax.Array:
    """``(B, n, *spatial, C)``: ``x_{k+1} = predict(x_k, step)``, ``k = 0..n-1`` (the states at
    lead times ``step, 2·step, ..., n·step``)."""
    x = jnp.asarray(x0)
    t = jnp.full(x.shape[:1], step, x.dtype)
    states = []
    for _ in range(n):
        x = predict(x, t)
        states.append(x)
    return jnp.stack(states, axis=1)


def run_predictor(run: Any) -> Predictor:
    """The predictor of a loaded all2all run (:func:`nopx.training.evaluate.load_run`) in
    physical time units: ``x`` and ``y`` unnormalised, ``t`` divided by the run's
    lead-time unit before the model sees it."""
    scale = run.meta.get("time_scale")
    if scale is None:
        raise ValueError("not an all2all run (its checkpoint records no lead-time unit)")

    def predict(x: jax.Array, t: jax.Array) -> jax.Array:
        lead = jnp.broadcast_to((t / scale).reshape(-1, *[1] * (x.ndim - 1)), (*x.shape[:-1], 1))
        return run.steps.predict(run.params, jnp.concatenate([x, lead.astype(x.dtype)], axis=-1))

    return predict


def lead_time_errors(predict: Predictor, snapshots: np.ndarray, times: np.ndarray,
                     batch_size: int = 16) -> dict[str, list[float]]:
    """Relative L2 error against lead time, from the first snapshot of each trajectory.

    Args:
      predict: a predictor in the units of ``times``.
      snapshots: ``(N, K + 1, *spatial, C)`` trajectories, snapshot 0 the initial state.
      times: ``(K + 1,)`` their times, evenly spaced (the rollout's step is the first
        interval).
      batch_size: trajectories per call.

    Returns:
      ``lead_times`` (``t_k − t_0``, ``k = 1..K``), ``rel_l2_direct`` (one call per lead
      time) and ``rel_l2_rollout`` (``k`` steps of one snapshot interval), each averaged
      over the trajectories.
    """
    leads = [float(t - times[0]) for t in times[1:]]
    step = float(times[1] - times[0])
    totals = np.zeros((2, len(leads)))
    for start in range(0, len(snapshots), batch_size):
        chunk = jnp.asarray(snapshots[start:start + batch_size])
        truth = chunk[:, 1:]
        for row, pred in enumerate((predict_at(predict, chunk[:, 0], leads),
                                    rollout_with_step(predict, chunk[:, 0], step, len(leads)))):
            totals[row] += [float(losses.relative_lp(pred[:, k], truth[:, k])) * len(chunk)
                            for k in range(len(leads))]
    totals /= len(snapshots)
    return {"lead_times": leads, "rel_l2_direct": totals[0].tolist(),
            "rel_l2_rollout": totals[1].tolist()}
