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

from nopx.registry import Registry

MODELS = Registry("model")
register = MODELS.register
get = MODELS.get
build = MODELS.build
available = MODELS.available
