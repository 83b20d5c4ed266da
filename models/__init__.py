"""Neural-operator architectures, one module per family, found by name through the registry.

``build(name, **kwargs)`` makes a registered model, ``available()`` lists the names.
Grid models map channels-last ``(B, *spatial, C_in)`` to ``(B, *spatial, C_out)``.
"""

from nopx.models.deeponet import DeepONet, MultiONet
from nopx.models.fno import FNO
from nopx.models.mgno import MgNO
from nopx.models.mgtfno import MGTFNO
from nopx.models.patching import MultigridPatching
from nopx.models.registry import available, build, get, register
from nopx.models.scot import ScOT
from nopx.models.sfno import SFNO
from nopx.models.tfno import TFNO

__all__ = ["FNO", "MGTFNO", "SFNO", "TFNO", "DeepONet", "MgNO", "MultiONet", "MultigridPatching",
           "ScOT", "available", "build", "get", "register"]
