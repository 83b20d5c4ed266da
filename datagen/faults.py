"""Fault injection for the test suite (``tests/faults/``): a no-op unless ``NOPX_FAULT`` is set.

``NOPX_FAULT=POINT:COUNT[:ACTION]`` acts the ``COUNT``-th time (1-based, per process) this
process reaches the named point: ``kill`` (default) sends itself SIGKILL, ``enospc`` raises
``OSError(ENOSPC)`` as a full disk would. A point is any name passed to :func:`fault_point`
(``nopx train`` has its own, ``train_*``); those of ``nopx datagen``, in order
(:data:`POINTS`):

=========  ================================================================
``start``   the writer holds the file (and its lock), before any solve
``create``  a new file's layout is on disk under its staging name, not yet renamed
``sample``  a sample is solved, its chain not yet written (also in ``--workers`` processes)
``write``   a batch's field data and meta columns are written, not yet flushed
``flush``   the batch is flushed, its ``done`` flags not yet written
``done``    the ``done`` flags are written, not yet flushed
``finish``  every sample is verified, the ``complete`` flag not yet written
=========  ================================================================

>>> fault_point("sample")  # unless NOPX_FAULT names it, nothing happens
"""

from __future__ import annotations

import collections
import errno
import os
import signal

__all__ = ["fault_point", "POINTS"]

POINTS = ("start", "create", "sample", "write", "flush", "done", "finish")
_REACHED: collections.Counter[str] = collections.Counter()


def fault_point(name: str) -> None:
    """Mark reaching point ``name``; act if ``NOPX_FAULT`` names it and this is the chosen arrival."""
    spec = os.environ.get("NOPX_FAULT")
    if not spec:
        return
    point, _, rest = spec.partition(":")
    if point != name:
        return
    count, _, action = rest.partition(":")
    _REACHED[name] += 1
    if _REACHED[name] != int(count or 1):
        return
    if action == "enospc":
        raise OSError(errno.ENOSPC, f"No space left on device (injected by NOPX_FAULT={spec})")
    os.kill(os.getpid(), signal.SIGKILL)
