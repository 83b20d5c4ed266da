"""The ``model`` and ``loss`` sections: a registered name and its constructor arguments."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A registered model (``name``) and its constructor arguments (``kwargs``).

    In YAML the arguments sit beside ``name``: ``model: {name: fno, n_modes: [12, 12]}``.
    ``in_channels``/``out_channels`` default to the number of input/target fields.
    """

    name: str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """A registered training loss (``name``) and its arguments (``kwargs``).

    Built in: ``relative_l2`` (``p``), ``h1`` (finite differences), ``sobolev`` (order ``s``,
    any real, negative included; ``domain``); user code adds more with
    :func:`nopx.losses.register_loss`. In YAML the arguments sit beside the name:
    ``loss: {name: sobolev, s: -1}``.
    """

    name: str = "relative_l2"
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
