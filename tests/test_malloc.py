"""nopx/_malloc.py: ``import nopx`` keeps big freed blocks in the heap (glibc), opt-out, no-op elsewhere."""

from __future__ import annotations

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
