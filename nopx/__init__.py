"""nopx: neural-operator PDE surrogates in JAX.

Sub-packages are imported on demand so that ``import nopx`` (and ``nopx --help``) stays
free of JAX: ``nopx.models``, ``nopx.layers``, ``nopx.losses``, ``nopx.datagen``,
``nopx.training``, ``nopx.config``.
"""

from nopx._malloc import tune_malloc

__version__ = "0.1.0"

# Before JAX allocates anything: XLA:CPU's per-step scratch blocks then stay in the heap
# instead of being mapped and faulted in again every step (nopx/_malloc.py).
tune_malloc()
