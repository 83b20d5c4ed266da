"""Models by name: ``@register("fno")`` on a constructor, ``build("fno", **kwargs)`` to make one.

The name is what a config writes (``model: {name: fno, ...}``); the keyword arguments are
the constructor's, so a run directory that stores them can rebuild its model.

>>> from nopx import models
>>> "fno" in models.available()
True
>>> models.build("fno", in_channels=1, out_channels=1, n_modes=(4,), hidden_channels=4).n_layers
4
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flax import nnx

Constructor = TypeVar("Constructor", bound=Callable[..., nnx.Module])

_REGISTRY: dict[str, Callable[..., nnx.Module]] = {}


def register(name: str) -> Callable[[Constructor], Constructor]:
    """Class (or factory) decorator adding the constructor to the registry under ``name``."""
    def add(constructor: Constructor) -> Constructor:
        if name in _REGISTRY and _REGISTRY[name] is not constructor:
            raise ValueError(f"model name {name!r} is already registered to "
                             f"{_REGISTRY[name].__module__}.{_REGISTRY[name].__qualname__}")
        _REGISTRY[name] = constructor
        return constructor

    return add


def get(name: str) -> Callable[..., nnx.Module]:
    """The constructor registered as ``name``; ``ValueError`` listing the names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(available())}") from None


def build(name: str, **kwargs: Any) -> nnx.Module:
    """``get(name)(**kwargs)``."""
    return get(name)(**kwargs)


def available() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)
