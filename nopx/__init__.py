"""nopx: neural-operator PDE surrogates in JAX.

Sub-packages are imported on demand so that ``import nopx`` (and ``nopx --help``) stays
free of JAX: ``nopx.models``, ``nopx.layers``, ``nopx.losses``, ``nopx.datagen``,
``nopx.training``, ``nopx.config``.
"""

__version__ = "0.1.0"
