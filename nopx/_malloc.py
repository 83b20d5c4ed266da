"""glibc malloc tuned for XLA:CPU, applied in-process when ``nopx`` is imported.

XLA:CPU allocates each execution's temporaries as one block (360 MiB for a 2-D FNO train
step at batch 16). glibc serves blocks above its mmap threshold with a fresh ``mmap`` and
returns them with ``munmap`` on free, so every step faults in tens of thousands of zeroed
4 KiB pages: up to 45% of a step on 2 cores (bench/RESULTS.md, "Where nopx's training step
goes"). Three ``mallopt`` settings keep freed big blocks in the heap for the next step:

* ``M_MMAP_MAX = 0``: no block is served by ``mmap``;
* ``M_TRIM_THRESHOLD`` = 2 GiB: the top of the heap is not given back after every step;
* ``M_TOP_PAD`` = 64 MiB: a worker thread's arena keeps its 64 MiB heaps once freed (glibc
  unmaps a heap that became wholly free unless the padding would not fit in it). Eigen's
  packing buffers of a large matrix product (32 MiB each, allocated on XLA's worker threads)
  otherwise made a new heap and unmapped it every call: 700k-930k page faults per call of
  a 4096×2048 product pair, 0-3,300 with the padding (``tests/test_malloc.py``). The padding is
  address space, not memory: pages are only touched when used.

The step's block comes from the main arena, the heap of the thread that calls the compiled
step, as long as dispatch is synchronous (below); a block above 64 MiB in another thread's
arena would still be ``mmap``-ed whatever ``M_MMAP_MAX`` says. nopx used to force a single
arena (``M_ARENA_MAX = 1``) for that reason, but that put every allocation of XLA's worker
threads behind one lock: about 9,000 small ``malloc`` calls per train step of config e
(``bench/train_step.py``), 300-600 voluntary context switches per step against 35-75 with
per-thread arenas, and steps 5-15% slower on four of the five configs (2026-11-30, quiet 2
cores: e 165-177 → 149-151 ms, b 140-160 → 125-126 ms, with 0 page faults per step either
way).

The cost: the resident set stays at its peak. The settings act on allocations made after
the call, so they apply here, before JAX is imported; they change the whole process, which
is why ``NOPX_MALLOC=default`` opts out. Other C libraries (macOS, musl): nothing is done.

A kept block only helps if it is free when the next step asks for one. XLA:CPU hands an
execution's temporaries back *after* its outputs are ready, and with JAX's asynchronous CPU
dispatch the next step's request often comes first: the heap then keeps two blocks (or
more), and peak RSS doubled (config d of ``bench/train_step.py``: 2.3-4.1 GiB instead of
1.4 GiB; config e: 1.57 instead of 0.84 GiB). :func:`tune_jax` therefore also turns
JAX's CPU dispatch synchronous (``jax_cpu_enable_async_dispatch=False``: a call returns when
the computation, its temporaries included, is done); measured step times were the same or
slightly lower (2026-11-30, quiet 2 cores).

The kept heap also keeps what the XLA compiler freed: about 100 MiB after compiling a 2-D
FNO train step, under the step's temporaries, which then come from the top of the heap, so
the peak resident set was compile scratch + temporaries (config a: 862-873 MiB, the PyTorch
peer 807-854). :func:`tune_jax` therefore hands the free heap pages back with
``malloc_trim(0)`` after every XLA compilation (a JAX monitoring event): config a 779 MiB.

:func:`tune_jax` is applied where nopx first imports JAX (``nopx.layers``, ``nopx.losses``,
``nopx.training``), so ``import nopx`` stays free of JAX, and only while the allocator
settings are on; the dispatch setting acts if JAX's CPU backend is not yet running (after
that, it no longer changes anything).
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4
SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, 64 << 20))
OPT_OUT = "NOPX_MALLOC"


def _glibc() -> ctypes.CDLL | None:
    """The running glibc, or None under another C library."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # only glibc defines it (musl and macOS have mallopt or not)
        return libc
    except (OSError, AttributeError):
        return None


_tuned = False


def tune_malloc() -> bool:
    """Apply :data:`SETTINGS` unless ``NOPX_MALLOC=default``; True if glibc took all of them."""
    global _tuned
    if os.environ.get(OPT_OUT, "").lower() == "default":
        return False
    libc = _glibc()
    if libc is None:
        return False
    _tuned = all(libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1
                 for param, value in SETTINGS)
    return _tuned


#: The JAX monitoring event recorded when an XLA compilation finishes.
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
#: How many times the heap was trimmed after a compilation (tests read it).
trims = 0
_listening = False


def _trim_after_compile(event: str, duration_secs: float, **kwargs: str | int) -> None:
    global trims
    if event == COMPILE_EVENT and (libc := _glibc()) is not None:
        libc.malloc_trim(ctypes.c_size_t(0))
        trims += 1


def tune_jax() -> bool:
    """Make JAX's CPU dispatch synchronous and trim the heap after every compilation, where
    :func:`tune_malloc` took effect (module docstring); True if it did. Imports JAX."""
    if not _tuned:
        return False
    import jax

    global _listening
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    if not _listening:
        jax.monitoring.register_event_duration_secs_listener(_trim_after_compile)
        _listening = True
    return True
