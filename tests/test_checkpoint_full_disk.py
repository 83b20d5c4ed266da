"""A full disk while checkpointing: orbax's follow-on reports are dropped, nothing else is.

The real full disk (a tmpfs) is in ``tests/faults/test_train_faults.py``; here the save
itself fails with ``ENOSPC`` and the follow-on report is made the way tensorstore makes it.
"""

import asyncio
import errno
import sys
import threading

import numpy as np
import pytest
import tensorstore as ts

from nopx.config import CheckpointConfig
from nopx.errors import UserError
from nopx.training.checkpoint import Checkpoints, ClosedLoopFilter


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _complete_on_a_closed_loop() -> None:
    """What a failed save leaves in flight: a tensorstore future awaited on an event loop that
    closes before it completes; completing it reports ``Event loop is closed`` as unraisable."""
    promise, future = ts.Promise.new()
    loop = asyncio.new_event_loop()

    async def link() -> None:
        future.__await__()                      # tensorstore links its completion to the loop

    loop.run_until_complete(link())
    loop.close()
    promise.set_result(None)


class _Broken:
    def __del__(self):
        raise KeyError("an ordinary unraisable error")


def _raise_in_a_thread() -> None:
    def fail():
        raise ValueError("an ordinary thread's error")

    thread = threading.Thread(target=fail)
    thread.start()
    thread.join()


def test_full_disk_drops_only_the_closed_loop_reports(tmp_path, monkeypatch):
    thread_errors, unraisable = [], []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    checkpoints = Checkpoints(tmp_path, CheckpointConfig(best_metric=None), writer=True)
    monkeypatch.setattr(checkpoints.latest, "save", _no_space)
    for step in (0, 1):                         # two failures, one filter
        with pytest.raises(UserError, match="the disk is full"):
            checkpoints.save(step, {"w": np.zeros(3)}, {})
    assert isinstance(sys.unraisablehook, ClosedLoopFilter)
    assert sys.unraisablehook.previous == unraisable.append

    _raise_in_a_thread()
    assert [args.exc_type for args in thread_errors] == [ValueError]
    _complete_on_a_closed_loop()
    assert unraisable == []
    _Broken()
    assert [report.exc_type for report in unraisable] == [KeyError]
