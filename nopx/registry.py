"""A name → constructor table: what models and losses are looked up in by a config.

>>> shapes = Registry("shape")
>>> @shapes.register("square")
... def square(side=1.0):
...     return side * side
>>> shapes.build("square", side=3.0), shapes.available()
(9.0, ['square'])
>>> shapes.get("circle")
Traceback (most recent call last):
...
ValueError: unknown shape 'circle'; registered: square
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

Constructor = TypeVar("Constructor", bound=Callable[..., Any])


class Registry:
    """Constructors by name, for one ``kind`` of thing (named in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Constructor], Constructor]:
        """Decorator adding the constructor under ``name`` (re-registering it is a no-op)."""
        def add(constructor: Constructor) -> Constructor:
            known = self._entries.get(name)
            if known is not None and known is not constructor:
                raise ValueError(f"{self.kind} name {name!r} is already registered to "
                                 f"{known.__module__}.{known.__qualname__}")
            self._entries[name] = constructor
            return constructor

        return add

    def get(self, name: str) -> Callable[..., Any]:
        """The constructor registered as ``name``; ``ValueError`` listing the names otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; registered: "
                             f"{', '.join(self.available())}") from None

    def build(self, name: str, **kwargs: Any) -> Any:
        """``get(name)(**kwargs)``."""
        return self.get(name)(**kwargs)

    def available(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)
