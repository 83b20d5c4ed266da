"""Constructor-argument checks shared by layers and models: bad values raise ``ValueError``.

>>> check_choice("fno_skip", "linear", ("linear", "identity"))
>>> check_choice("fno_skip", "lineer", ("linear", "identity"))
Traceback (most recent call last):
...
ValueError: unknown fno_skip 'lineer'; choose one of 'linear', 'identity'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def check_positive(**sizes: Any) -> None:
    """Raise ``ValueError`` naming the first argument that is not a positive integer."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_n_modes(n_modes: Any) -> tuple[int, ...]:
    """``n_modes`` as a tuple of 1 to 3 positive ints (one per spatial axis), or ``ValueError``."""
    if isinstance(n_modes, (int, str)) or not isinstance(n_modes, Sequence) \
            or not 1 <= len(n_modes) <= 3:
        raise ValueError(f"n_modes must list the modes kept per spatial axis of a 1-, 2- or "
                         f"3-D grid, e.g. (16, 16); got {n_modes!r}")
    for axis, m in enumerate(n_modes):
        check_positive(**{f"n_modes[{axis}]": m})
    return tuple(n_modes)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of "
                         f"{', '.join(map(repr, choices))}")
