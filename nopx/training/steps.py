"""Jitted train and eval steps over a split model (graph definition + parameter pytree).

The model is split once with :func:`flax.nnx.split`; the steps are pure functions of the
parameter pytree, so ``jax.jit`` traces them once, the train state is donated, and
parameters and optimizer state are plain pytrees for orbax and for sharding. Given
:class:`~nopx.parallel.StepShardings`, the steps are jitted with them as
``in_shardings``/``out_shardings``: the batch split on ``data``, parameters and optimizer
state as the model's sharding rule says, the returned state where it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nopx import losses
from nopx.parallel import StepShardings
from nopx.training import tasks
from nopx.training.data import Normalizer
from nopx.training.prefetch import BatchLoader
from nopx.training.tasks import Apply, direct

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def eval_metrics(pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    """Batch-mean test metrics: relative L2, relative H1 (finite differences), and the
    relative L2 of each output channel (each predicted time step of a trajectory)."""
    per_channel = jax.vmap(lambda p, t: losses.relative_lp(p[..., None], t[..., None]),
                           in_axes=-1)(pred, target)
    return {"rel_l2": losses.relative_lp(pred, target), "h1": losses.h1(pred, target),
            "rel_l2_per_channel": per_channel}


class Steps:
    """Train/eval steps for one model, normaliser pair and loss.

    ``x`` is normalised inside the step and the model applied by the task's ``apply``
    (:mod:`nopx.training.tasks`); the prediction is decoded to physical units before the
    loss, so losses and metrics compare with the raw targets. A model that trains per patch
    (:func:`~nopx.training.tasks.trains_per_patch`) has its training loss on its patches
    against the target cut the same way; :meth:`predict` and the eval step always use the
    whole field. The normalisers are per channel, so they decode patches like fields.
    """

    def __init__(self, graphdef: nnx.GraphDef, rest: nnx.State, tx: optax.GradientTransformation,
                 loss: LossFn, x_norm: Normalizer, y_norm: Normalizer,
                 apply: Apply = direct, lr_multipliers: Any = None,
                 shardings: StepShardings | None = None) -> None:
        self.graphdef = graphdef
        self.apply = apply
        self.rest = rest
        self.tx = tx
        self.loss = loss
        self.x_norm = x_norm
        self.y_norm = y_norm
        self.lr_multipliers = lr_multipliers
        self.shardings = shardings
        train: dict[str, Any] = {}
        evaluate: dict[str, Any] = {}
        if shardings is not None:
            s = shardings
            train = {"in_shardings": (s.params, s.opt_state, s.batch, s.batch, s.replicated),
                     "out_shardings": (s.params, s.opt_state, s.replicated, s.replicated)}
            # Batches keep their own sharding: a split's last, short batch comes replicated.
            evaluate = {"in_shardings": (s.params, None, None), "out_shardings": s.replicated}
        self.train_step = jax.jit(self._train_step, donate_argnums=(0, 1), **train)
        self.eval_step = jax.jit(self._eval_step, **evaluate)
        self.predict = jax.jit(self._predict)

    def _predict(self, params: nnx.State, x: jax.Array) -> jax.Array:
        model = nnx.merge(self.graphdef, params, self.rest)
        return self._decoded(model, x)

    def _decoded(self, forward: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
        """The task's ``apply`` of ``forward`` (the model, or its per-patch form) in physical
        units."""
        return self.y_norm.decode(self.apply(forward, self.x_norm.encode(x)))

    def _train_pair(self, params: nnx.State, x: jax.Array,
                    y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(prediction, target)`` the training loss compares: whole fields ``(B, *n, C)``,
        or ``(B·P, *m, C)`` patches of both for a model that trains per patch."""
        model = nnx.merge(self.graphdef, params, self.rest)
        if tasks.trains_per_patch(model):
            return self._decoded(model.patches, x), model.patch_target(y)
        return self._decoded(model, x), y

    def _train_step(self, params: nnx.State, opt_state: Any, x: jax.Array, y: jax.Array,
                    lr_scale: jax.Array | float = 1.0) -> tuple[nnx.State, Any, jax.Array, jax.Array]:
        """One optimizer step; returns ``(params, opt_state, loss, finite)``.

        ``finite`` is ``(1 + n_leaves,)`` booleans: the loss, then each parameter's gradient
        (in ``jax.tree.leaves`` order), so a divergence names the parameters it hit.
        ``lr_scale`` multiplies the update (the learning rate, and AdamW's decoupled decay
        with it): a rollback after a divergence lowers it. ``lr_multipliers`` (a pytree of
        factors like ``params``, or ``None``) does the same per parameter group.
        """
        def objective(p: nnx.State) -> jax.Array:
            return self.loss(*self._train_pair(p, x, y))

        value, grads = jax.value_and_grad(objective)(params)
        updates, opt_state = self.tx.update(grads, opt_state, params)
        if self.lr_multipliers is None:
            updates = jax.tree.map(lambda u: u * lr_scale, updates)
        else:
            updates = jax.tree.map(lambda u, m: u * (m * lr_scale), updates, self.lr_multipliers)
        finite = jnp.stack([jnp.isfinite(value)]
                           + [jnp.isfinite(g).all() for g in jax.tree.leaves(grads)])
        return optax.apply_updates(params, updates), opt_state, value, finite

    def _eval_step(self, params: nnx.State, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
        return eval_metrics(self._predict(params, x), y)


def evaluate(steps: Steps, params: nnx.State, split, batch_size: int,
             mesh: jax.sharding.Mesh | None = None) -> dict[str, float | list[float]]:
    """Sample-weighted mean of :func:`eval_metrics` over a whole split (vectors as lists).

    On a ``mesh`` each process reads only the rows of each batch its devices hold.
    """
    totals: dict[str, jax.Array] = {}
    loader = BatchLoader(split, mesh)
    for start in range(0, len(split), batch_size):
        positions = np.arange(start, min(start + batch_size, len(split)))
        x, y = loader.load(positions)
        metrics = steps.eval_step(params, x, y)
        for name, value in metrics.items():
            totals[name] = totals.get(name, 0.0) + value * len(positions)
    return {name: (total / len(split)).tolist() for name, total in totals.items()}
