"""nopx/_malloc.py: ``import nopx`` keeps big freed blocks in the heap (glibc), opt-out, no-op elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import nopx._malloc as malloc

# Allocate, touch and free a 256 MiB block, then report whether its pages are still resident:
# with nopx's settings the block came from the heap and stays; with glibc's defaults it was
# mmap'ed and munmap'ed on free.
PROBE = """
import ctypes, nopx
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
def rss(): return int(open("/proc/self/statm").read().split()[1]) * 4096
size = 256 << 20
block = libc.malloc(size)
ctypes.memset(block, 1, size)
before = rss()
libc.free(ctypes.c_void_p(block))
print(before - rss() < size // 2)
"""

glibc_only = pytest.mark.skipif(malloc._glibc() is None or not sys.platform.startswith("linux"),
                                reason="glibc on Linux only")


def _kept(env: dict[str, str]) -> bool:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**env, "PATH": ""})
    return out.stdout.strip() == "True"


@glibc_only
def test_import_keeps_freed_blocks_and_can_be_turned_off():
    assert _kept({})
    assert not _kept({malloc.OPT_OUT: "default"})


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(malloc, "_glibc", lambda: None)
    assert malloc.tune_malloc() is False


def test_opt_out(monkeypatch):
    monkeypatch.setenv(malloc.OPT_OUT, "default")
    assert malloc.tune_malloc() is False


# Run a jitted function whose XLA temporaries take about 48 MiB, ten times, and report the
# heap's allocated bytes right after the last call returned (mallinfo2), in MiB.
HELD = """
import ctypes, nopx.layers, jax, jax.numpy as jnp
from jax._src import xla_bridge
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
f = jax.jit(lambda x: (jnp.sin(x) @ jnp.cos(x).T + jnp.exp(x)).sum())
x = jnp.ones((2048, 2048))
f(x).block_until_ready()
before = libc.mallinfo2().uordblks
for _ in range(10):
    f(x).block_until_ready()
print(xla_bridge._CPU_ENABLE_ASYNC_DISPATCH.value, (libc.mallinfo2().uordblks - before) / 2**20)
"""


@glibc_only
def test_cpu_dispatch_is_synchronous_so_each_step_hands_its_scratch_back():
    out = subprocess.run([sys.executable, "-c", HELD], capture_output=True, text=True, check=True)
    asynchronous, held_mib = out.stdout.split()
    assert asynchronous == "False"
    assert float(held_mib) < 8, "a step's temporaries were still allocated when the call returned"
    opted_out = subprocess.run([sys.executable, "-c", HELD], capture_output=True, text=True,
                               check=True, env={**os.environ, malloc.OPT_OUT: "default"})
    assert opted_out.stdout.split()[0] == "True"


# Free a touched 256 MiB heap block (kept resident under nopx's settings), compile a new
# function, and report whether the block's pages left the resident set, and the trim count.
TRIMMED = """
import ctypes, nopx._malloc as malloc, nopx.layers, jax, jax.numpy as jnp
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
def rss(): return int(open("/proc/self/statm").read().split()[1]) * 4096
size = 256 << 20
keep_top = libc.malloc(1 << 20)  # a live block above ours: only an in-heap trim can release it
block = libc.malloc(size)
ctypes.memset(block, 1, size)
guard = libc.malloc(1 << 20)
libc.free(ctypes.c_void_p(block))
before, trims = rss(), malloc.trims
jax.jit(lambda x: jnp.sin(x) * 3.0)(jnp.ones(7)).block_until_ready()
print(before - rss() > size // 2, malloc.trims > trims)
"""


@glibc_only
def test_the_heap_is_trimmed_after_each_compilation():
    """What the compiler freed leaves the resident set, so a step's temporaries do not stack on it."""
    out = subprocess.run([sys.executable, "-c", TRIMMED], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


# Two 4096x2048 matrix products: XLA's worker threads allocate Eigen's 32 MiB packing
# buffers in their own arenas, over and over. Report the minor page faults per call (mean of
# the last 5): 0-3,000 with nopx's settings; 700k-930k without M_TOP_PAD (a freed heap of a
# worker's arena is unmapped and mapped again), 3M with glibc's defaults.
FAULTS = """
import resource, nopx.layers, jax, jax.numpy as jnp
f = jax.jit(lambda x: (jnp.sin(x) @ jnp.cos(x).T + jnp.exp(x) @ jnp.tanh(x).T).sum())
x = jnp.ones((4096, 2048))
for _ in range(3):
    f(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    f(x).block_until_ready()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5)
"""


@glibc_only
def test_worker_thread_arenas_keep_their_freed_heaps():
    """XLA's worker threads keep their own arenas (one shared arena serialised their small
    allocations), and what they free stays mapped for the next call."""
    tuned = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True)
    default = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True,
                             check=True, env={**os.environ, malloc.OPT_OUT: "default"})
    assert int(tuned.stdout) < 20_000 < int(default.stdout)
