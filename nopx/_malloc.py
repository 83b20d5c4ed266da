"""glibc malloc tuned for XLA:CPU, applied in-process when ``nopx`` is imported.

XLA:CPU allocates each execution's temporaries as one block (360 MiB for a 2-D FNO train
step at batch 16). glibc serves blocks above its mmap threshold with a fresh ``mmap`` and
returns them with ``munmap`` on free, so every step faults in tens of thousands of zeroed
4 KiB pages: up to 45% of a step on 2 cores (bench/RESULTS.md, "Where nopx's training step
goes"). Three ``mallopt`` settings keep freed big blocks in the heap for the next step:

* ``M_MMAP_MAX = 0``: no block is served by ``mmap``;
* ``M_ARENA_MAX = 1``: one arena, because a thread's own arena falls back to ``mmap`` for
  blocks above its 64 MiB heap whatever ``M_MMAP_MAX`` says;
* ``M_TRIM_THRESHOLD`` = 2 GiB: the top of the heap is not given back after every step.

The cost: the resident set stays at its peak. The settings act on allocations made after
the call, so they apply here, before JAX is imported; they change the whole process, which
is why ``NOPX_MALLOC=default`` opts out. Other C libraries (macOS, musl): nothing is done.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
SETTINGS = ((M_MMAP_MAX, 0), (M_ARENA_MAX, 1), (M_TRIM_THRESHOLD, 2**31 - 1))
OPT_OUT = "NOPX_MALLOC"


def _glibc() -> ctypes.CDLL | None:
    """The running glibc, or None under another C library."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # only glibc defines it (musl and macOS have mallopt or not)
        return libc
    except (OSError, AttributeError):
        return None


def tune_malloc() -> bool:
    """Apply :data:`SETTINGS` unless ``NOPX_MALLOC=default``; True if glibc took all of them."""
    if os.environ.get(OPT_OUT, "").lower() == "default":
        return False
    libc = _glibc()
    if libc is None:
        return False
    return all(libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1
               for param, value in SETTINGS)
