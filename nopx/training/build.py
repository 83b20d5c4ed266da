"""Build a registered model from config values, turning argument mistakes into user errors."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from nopx.errors import UserError
from nopx.parallel import ShardingRules


def model_kwargs(kwargs: dict[str, Any], in_channels: int, out_channels: int, *,
                 where: str = "config") -> dict[str, Any]:
    """Constructor arguments with the channel counts taken from the data; a config that
    names other counts is refused (the model could not take the data)."""
    for key, count in (("in_channels", in_channels), ("out_channels", out_channels)):
        if key in kwargs and kwargs[key] != count:
            raise UserError(f"{where}: model.{key} is {kwargs[key]} but the data gives {count} "
                            f"(one per field, or per time slice of a trajectory window); leave "
                            f"model.{key} out and nopx sets it from the data")
    return {"in_channels": in_channels, "out_channels": out_channels, **kwargs}


def check_model_fits(predict: Callable[..., Any], params: Any, x: np.ndarray, y: np.ndarray, *,
                     name: str, where: str) -> None:
    """Trace ``predict(params, x)`` without computing and compare with the target shape, so
    a model that cannot take the data fails now, with a message, not inside the first step."""
    try:
        out = jax.eval_shape(predict, params, jax.ShapeDtypeStruct(x.shape, x.dtype))
    except (TypeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{where}: model '{name}' cannot take the data's input of shape "
                        f"{x.shape} (batch, *grid, channels): {first}; check the model's "
                        "arguments against the data") from None
    if out.shape != y.shape:
        raise UserError(f"{where}: model '{name}' maps input {x.shape} to {out.shape}, but the "
                        f"targets are {y.shape}; check the model's arguments against the data")


def check_modes(kwargs: dict[str, Any], spatial_shape: Sequence[int], *, where: str) -> None:
    """Reject ``n_modes`` the grid cannot hold (more modes than points, or wrong dimension)."""
    modes = kwargs.get("n_modes")
    if modes is None:
        return
    modes = [modes] if isinstance(modes, int) else list(modes)
    if len(modes) == len(spatial_shape) + 1:
        modes = modes[:-1]  # a space-time model (SFNO) adds a time mode count: not a grid axis
    if len(modes) != len(spatial_shape):
        raise UserError(f"{where}: model.n_modes has {len(modes)} entries but the data is "
                        f"{len(spatial_shape)}-D (grid {tuple(spatial_shape)}); give one per axis")
    for axis, (m, n) in enumerate(zip(modes, spatial_shape)):
        if m > n:
            raise UserError(f"{where}: model.n_modes[{axis}] = {m} exceeds the grid size {n} "
                            f"on that axis; use at most {n} (at most {n // 2} avoids aliasing)")


def _check_registered(kind: str, name: str, available: Sequence[str], *, where: str) -> None:
    if name not in available:
        close = difflib.get_close_matches(name, available, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UserError(f"{where}: {kind}.name '{name}' is not a registered {kind}{hint} "
                        f"(available: {', '.join(available)}; user code registers more "
                        "through the config's imports:)")


def _check_arguments(kind: str, name: str, constructor: Callable[..., Any],
                     kwargs: dict[str, Any], *, where: str) -> None:
    """Refuse keyword arguments ``constructor`` does not take, suggesting the closest one."""
    # nnx's module metaclass hides a class's own signature; read it from __init__.
    accepted = inspect.signature(constructor.__init__ if isinstance(constructor, type)
                                 else constructor).parameters
    if any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        return
    valid = [k for k in accepted if k not in ("self", "rngs")]
    for key in kwargs:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise UserError(f"{where}: {kind}.{key} is not an argument of {kind} '{name}'{hint}")


def build_model(name: str, kwargs: dict[str, Any], *, seed: int, where: str) -> nnx.Module:
    """``nopx.models.build(name, **kwargs, rngs=nnx.Rngs(seed))`` with clear error messages."""
    from nopx import models

    _check_registered("model", name, models.available(), where=where)
    _check_arguments("model", name, models.get(name), kwargs, where=where)
    try:
        return models.build(name, **kwargs, rngs=nnx.Rngs(seed))
    except (TypeError, ValueError) as err:
        raise UserError(f"{where}: model '{name}': {err}") from None


def build_loss(name: str, kwargs: dict[str, Any], *, where: str) -> Callable[..., Any]:
    """The registered loss ``name`` made with ``kwargs``, with clear error messages."""
    from nopx import losses

    _check_registered("loss", name, losses.available_losses(), where=where)
    _check_arguments("loss", name, losses.get_loss(name), kwargs, where=where)
    try:
        return losses.build_loss(name, **kwargs)
    except (TypeError, ValueError) as err:
        raise UserError(f"{where}: loss '{name}': {err}") from None


def sharding_rules(name: str) -> ShardingRules:
    """The parameter-sharding rules declared by registered model ``name`` (its
    ``sharding_rules`` attribute, :func:`nopx.parallel.param_shardings`); none: replicated."""
    from nopx import models

    return getattr(models.get(name), "sharding_rules", ())
