"""Divergence watch: find the first step whose loss or gradients were not finite.

Each train step returns a small boolean vector (the loss, then each parameter's gradient).
Reading it every step would stall the device queue, so :class:`DivergenceWatch` keeps the
vectors of the steps since the last check and inspects them together at log points and
before every checkpoint save: a non-finite state is never saved, and the report names the
first bad step and the parameters whose gradients broke.

>>> import jax.numpy as jnp
>>> watch = DivergenceWatch(["w", "b"])
>>> watch.record(1, jnp.array([True, True, True]))
>>> watch.record(2, jnp.array([False, True, False]))
>>> watch.check()
Traceback (most recent call last):
...
nopx.training.divergence.Diverged: step 2: loss is not finite; non-finite gradients in b
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np


class Diverged(Exception):
    """The first non-finite step since the last check: ``step`` and the parameter names."""

    def __init__(self, step: int, loss_finite: bool, params: Sequence[str],
                 detail: str | None = None) -> None:
        self.step = step
        self.params = list(params)
        parts = ([] if loss_finite else ["loss is not finite"]) + ([detail] if detail else [])
        if self.params:
            shown = ", ".join(self.params[:6]) + (
                f" and {len(self.params) - 6} more" if len(self.params) > 6 else "")
            parts.append(f"non-finite gradients in {shown}")
        super().__init__(f"step {step}: " + "; ".join(parts or ["non-finite values"]))


class DivergenceWatch:
    """Collects per-step finiteness flags; :meth:`check` raises :class:`Diverged`."""

    def __init__(self, param_names: Sequence[str]) -> None:
        self.param_names = list(param_names)
        self._pending: list[tuple[int, jax.Array]] = []

    @classmethod
    def for_params(cls, params) -> "DivergenceWatch":
        """A watch naming the leaves of a parameter pytree (``layers.0.weight``, ...)."""
        names = [jax.tree_util.keystr(path, simple=True, separator=".")
                 for path, _ in jax.tree_util.tree_leaves_with_path(params)]
        return cls([name.removesuffix(".value") for name in names])

    def record(self, step: int, finite: jax.Array) -> None:
        """Keep step ``step``'s flags (``(1 + n_params,)``) without waiting for the device."""
        self._pending.append((step, finite))

    def check(self) -> None:
        """Raise :class:`Diverged` for the first recorded non-finite step, then forget them."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        flags = np.asarray(jax.device_get([finite for _, finite in pending]))
        bad = np.flatnonzero(~flags.all(axis=1))
        if bad.size:
            row = flags[bad[0]]
            broken = [name for name, ok in zip(self.param_names, row[1:]) if not ok]
            raise Diverged(pending[bad[0]][0], bool(row[0]), broken)
