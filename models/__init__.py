"""Neural-operator architectures, one module per family, found by name through the registry.

``build(name, **kwargs)`` makes a registered model, ``available()`` lists the names.
Grid models map channels-last ``(B, *spatial, C_in)`` to ``(B, *spatial, C_out)``.
"""

from nopx.models.fno import FNO
from nopx.models.registry import available, build, get, register
from nopx.models.sfno import SFNO

__all__ = ["FNO", "SFNO", "available", "build", "get", "register"]
