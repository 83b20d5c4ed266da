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
from typing import Any, TypeVar

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
P = TypeVar("P")                  # a parameter pytree
G = TypeVar("G")                  # a pytree of arrays with a leading group axis


def eval_metrics(pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    """Batch-mean test metrics: relative L2, relative H1 (finite differences), and the
    relative L2 of each output channel (each predicted time step of a trajectory)."""
    per_channel = jax.vmap(lambda p, t: losses.relative_lp(p[..., None], t[..., None]),
                           in_axes=-1)(pred, target)
    return {"rel_l2": losses.relative_lp(pred, target), "h1": losses.h1(pred, target),
            "rel_l2_per_channel": per_channel}


def mean_value_and_grad(fn: Callable[[P, G], jax.Array], params: P,
                        groups: G) -> tuple[jax.Array, P]:
    """The mean over groups of ``fn(params, group)`` and its gradient in ``params``.

    ``groups`` is a pytree of arrays ``(G, ...)``, one group per index of the leading axis.
    The groups run one after another (``lax.scan``), each one's backward pass before the
    next one's forward, so only one group's activations are live: the memory of a step on
    ``1/G`` of the data, for the same mean (the gradient of a mean is the mean of the
    gradients). For the mean of a loss over all the data, ``fn`` must be a mean over
    samples and the groups of equal size.

    >>> import jax.numpy as jnp
    >>> value, grad = mean_value_and_grad(lambda w, x: jnp.mean((w * x) ** 2), 2.0,
    ...                                   jnp.arange(4.0).reshape(2, 2))
    >>> float(value), float(grad)                        # mean of 4 w^2 x^2, of 2 w x^2
    (14.0, 14.0)
    """
    def accumulate(total: tuple[jax.Array, P], group: G) -> tuple[tuple[jax.Array, P], None]:
        return jax.tree.map(jnp.add, total, jax.value_and_grad(fn)(params, group)), None

    first = jax.tree.map(lambda a: a[0], groups)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                         jax.eval_shape(jax.value_and_grad(fn), params, first))
    (value, grads), _ = jax.lax.scan(accumulate, zeros, groups)
    count = jax.tree.leaves(groups)[0].shape[0]
    return value / count, jax.tree.map(lambda g: g / count, grads)


class Steps:
    """Train/eval steps for one model, normaliser pair and loss.

    ``x`` is normalised inside the step and the model applied by the task's ``apply``
    (:mod:`nopx.training.tasks`); the prediction is decoded to physical units before the
    loss, so losses and metrics compare with the raw targets. A model that trains per patch
    (:func:`~nopx.training.tasks.trains_per_patch`) has its training loss on its patches
    against the target cut the same way, the patches run in groups one after another so a
    step holds one group's activations; :meth:`predict` and the eval step always use the
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
        return self.y_norm.decode(self.apply(model, self.x_norm.encode(x)))

    def _loss_and_grads(self, params: nnx.State, x: jax.Array,
                        y: jax.Array) -> tuple[jax.Array, nnx.State]:
        """The training loss and its gradient: on whole fields ``(B, *n, C)``, or, for a
        model that trains per patch, the mean of the loss over its patch groups
        (``model.group``), one group at a time (:func:`mean_value_and_grad`)."""
        model = nnx.merge(self.graphdef, params, self.rest)
        if not tasks.trains_per_patch(model):
            return jax.value_and_grad(lambda p: self.loss(self._predict(p, x), y))(params)
        # The tasks that train per patch call the model on x as it is (tasks.check_per_patch),
        # so the task's apply of the patching gives the model's input windows.
        windows = self.apply(model.patch, self.x_norm.encode(x))
        grid = x.shape[1:-1]

        def group_loss(p: nnx.State, group: tuple[jax.Array, jax.Array]) -> jax.Array:
            windows, target = group
            outputs = nnx.merge(self.graphdef, p, self.rest).patch_outputs(windows, grid)
            return self.loss(self.y_norm.decode(outputs), target)

        groups = (model.group(windows), model.group(model.patch_target(y)))
        return mean_value_and_grad(group_loss, params, groups)

    def _train_step(self, params: nnx.State, opt_state: Any, x: jax.Array, y: jax.Array,
                    lr_scale: jax.Array | float = 1.0) -> tuple[nnx.State, Any, jax.Array, jax.Array]:
        """One optimizer step; returns ``(params, opt_state, loss, finite)``.

        ``finite`` is ``(1 + n_leaves,)`` booleans: the loss, then each parameter's gradient
        (in ``jax.tree.leaves`` order), so a divergence names the parameters it hit.
        ``lr_scale`` multiplies the update (the learning rate, and AdamW's decoupled decay
        with it): a rollback after a divergence lowers it. ``lr_multipliers`` (a pytree of
        factors like ``params``, or ``None``) does the same per parameter group.
        """
        value, grads = self._loss_and_grads(params, x, y)
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
