"""How a model is applied to a batch: directly, rolled out in time, in space-time, or
all2all with a lead time.

A task turns the model into ``apply(model, x) -> y`` on normalised, channels-last arrays:
``x (B, *spatial, C_in)`` to ``y (B, *spatial, C_out)``. For trajectory windows the
channels are time slices (see :class:`nopx.config.TimeConfig`); in all2all the last
channel of ``x`` is the lead time (:mod:`nopx.training.all2all`).

Whether a model is called ``model(x, t)`` is its own declaration, not a type check here:
a model class may define ``takes_time(kwargs) -> bool`` (scOT: when it is built
time-conditioned); models without it take ``model(x)`` and get the lead time as an input
channel (:func:`takes_time`). Likewise a model may declare that it trains per patch
(:func:`trains_per_patch`): the training loss then compares its per-patch outputs with the
target cut into the same patches, and everything else uses its whole-field call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from nopx.config import DataConfig
from nopx.errors import UserError
from nopx.training import all2all as lead_time
from nopx.training.data import Normalizer

# apply(model, x): the model, or a callable standing for it (a per-patch forward).
Apply = Callable[[Callable[..., jax.Array], jax.Array], jax.Array]


def direct(model: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """``model(x)``."""
    return model(x)


def rollout(model: nnx.Module, x: jax.Array, steps: int) -> jax.Array:
    """Autoregressive: predict one slice from the last ``C_in``, append it, repeat.

    ``x (B, *spatial, T_in)`` → ``(B, *spatial, steps)``; the loss sees the whole rollout, so
    gradients flow through every step as in the FNO paper's FNO-2D training.

    >>> import jax.numpy as jnp
    >>> shift = lambda window: window[..., -1:] + 1.0      # "next slice = last + 1"
    >>> rollout(shift, jnp.zeros((1, 2, 3)), 4)[0, 0].tolist()
    [1.0, 2.0, 3.0, 4.0]
    """
    if not isinstance(model, nnx.Module):
        model = _Wrap(model)
    # nnx modules may not cross into a lax.scan body as closures (nested nnx transforms check
    # trace levels): carry the state through the scan and merge it inside.
    graphdef, state = nnx.split(model)

    def step(carry: tuple[jax.Array, nnx.State], _: None):
        window, state = carry
        following = nnx.merge(graphdef, state)(window)
        return (jnp.concatenate([window[..., 1:], following], axis=-1), state), following[..., 0]

    _, slices = jax.lax.scan(step, (x, state), None, length=steps)
    return jnp.moveaxis(slices, 0, -1)


class _Wrap(nnx.Module):
    """A plain function as a stateless module (lets :func:`rollout` take either)."""

    def __init__(self, function: Callable[[jax.Array], jax.Array]) -> None:
        self.function = function

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.function(x)


def spacetime(model: nnx.Module, x: jax.Array, steps: int) -> jax.Array:
    """Space-time: repeat the input slices along a new time axis of length ``steps``.

    ``x (B, *spatial, T_in)`` → model on ``(B, *spatial, steps, T_in)`` → ``(B, *spatial, steps)``
    (the FNO paper's FNO-3D; the model adds the time coordinate with its grid embedding).
    """
    repeated = jnp.broadcast_to(x[..., None, :], (*x.shape[:-1], steps, x.shape[-1]))
    return model(repeated)[..., 0]


def all2all(model: nnx.Module, x: jax.Array, with_time: bool) -> jax.Array:
    """A lead-time sample: ``x (B, *spatial, C + 1)``, the lead time as its last, constant
    channel → ``(B, *spatial, C_out)``; ``model(fields, t)`` with ``t (B,)`` if
    ``with_time``, else ``model(x)`` (the lead time stays an input channel).

    >>> import jax.numpy as jnp
    >>> x = jnp.concatenate([jnp.ones((2, 3, 1)), jnp.full((2, 3, 1), 0.5)], axis=-1)
    >>> all2all(lambda u, t: u * t[:, None, None], x, True)[:, 0, 0].tolist()
    [0.5, 0.5]
    """
    if not with_time:
        return model(x)
    t = x[(slice(None),) + (0,) * (x.ndim - 2) + (-1,)]
    return model(x[..., :-1], t)


def takes_time(name: str, kwargs: dict[str, Any]) -> bool:
    """Whether the registered model ``name`` built with ``kwargs`` is called ``model(x, t)``:
    its class's ``takes_time(kwargs)``, if it declares one (an unknown name: ``False``;
    building it reports the error)."""
    from nopx import models

    if name not in models.available():
        return False
    declared = getattr(models.get(name), "takes_time", None)
    return bool(declared(kwargs)) if declared is not None else False


def trains_per_patch(model: nnx.Module) -> bool:
    """Whether ``model``'s training loss is per patch: it declares so with a true
    ``trains_per_patch`` attribute and then provides ``patch(x) -> (B·P, *w, C')`` input
    windows, ``patch_outputs(windows, spatial_shape) -> (B·P, *m, C_out)``,
    ``patch_target(y) -> (B·P, *m, C_out)`` and ``group(patches) -> (G, B·P/G, ...)``, the
    groups a train step runs one after another (multigrid patching without stitching,
    :class:`~nopx.models.MultigridPatching`); its call still returns the whole field."""
    return bool(getattr(model, "trains_per_patch", False))


def check_per_patch(model: nnx.Module, data: DataConfig, with_time: bool, *, where: str) -> None:
    """Refuse per-patch training where the task needs whole fields out of the model: a
    rollout feeds each predicted field back as the next input, space-time mode squeezes
    a time axis the patches would cut, and a time-conditioned call ``model(x, t)`` has no
    per-patch form. ``direct`` tasks and all2all with the lead time as a channel train."""
    if not trains_per_patch(model):
        return
    mode = data.time.mode if data.time is not None else "direct"
    if with_time or mode in ("rollout", "spacetime"):
        task = "all2all with a time-conditioned model" if with_time else mode
        raise UserError(f"{where}: model.stitching: false trains the model on patches, which "
                        f"data.time.mode {task} cannot do (it needs whole fields out of the "
                        "model); remove model.stitching (or set it to true) to train on the "
                        "stitched field, or use data.time.mode: direct")


def make_apply(data: DataConfig, output_steps: int | None, with_time: bool = False) -> Apply:
    """The apply function of a data config's task (``with_time``: the model takes the lead
    time as an argument, all2all only)."""
    if data.time is None or data.time.mode == "direct":
        return direct
    if data.time.mode == "rollout":
        return lambda model, x: rollout(model, x, output_steps)
    if data.time.mode == "all2all":
        return lambda model, x: all2all(model, x, with_time)
    return lambda model, x: spacetime(model, x, output_steps)


def channels(data: DataConfig, output_steps: int | None,
             with_time: bool = False) -> tuple[int, int]:
    """Default ``(in_channels, out_channels)`` of the model for a data config's task (in
    all2all, one more input channel for the lead time unless the model takes ``t``)."""
    if data.time is None:
        return len(data.inputs), len(data.targets)
    if data.time.mode == "direct":
        return data.time.input, output_steps
    if data.time.mode == "all2all":
        return len(data.inputs) + (0 if with_time else 1), len(data.targets)
    return data.time.input, 1


def identity_normalizers(data: DataConfig) -> tuple[Normalizer, Normalizer]:
    """``(x, y)`` normalisers that change nothing (``data.normalize: false``)."""
    if data.time is not None and data.time.mode == "all2all":
        return lead_time.identity_normalizers(len(data.inputs))
    return Normalizer.identity(len(data.inputs)), Normalizer.identity(len(data.targets))


def model_grid(data: DataConfig, spatial: tuple[int, ...], output_steps: int | None) -> tuple[int, ...]:
    """The grid the model sees: the spatial grid, plus the time axis in space-time mode."""
    if data.time is not None and data.time.mode == "spacetime":
        return (*spatial, output_steps)
    return spatial
