"""How much of the machine other processes use: a benchmark waits for quiet and records it.

Only ratios measured side by side mean anything on a shared machine; these helpers say how
shared it was while each child ran (``foreign_cpu_share``: busy CPU time of every process
but the child, over the child's wall time times the CPU count, from ``/proc/stat``).
"""

from __future__ import annotations

import os
import resource
import subprocess
import time


def machine_busy_s() -> float | None:
    """Busy CPU seconds of the whole machine so far (all CPUs), or None without /proc/stat."""
    try:
        with open("/proc/stat") as fh:
            ticks = [int(v) for v in fh.readline().split()[1:8]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wait_for_quiet(max_wait_s: float, max_share: float, window_s: float = 2.0) -> float | None:
    """Sleep until others use at most ``max_share`` of the machine over ``window_s`` or
    ``max_wait_s`` has passed; the last share measured (None if not measured)."""
    if max_wait_s <= 0:
        return None
    deadline = time.monotonic() + max_wait_s
    while True:
        b0 = machine_busy_s()
        time.sleep(window_s)
        b1 = machine_busy_s()
        if b0 is None or b1 is None:
            return None
        share = (b1 - b0) / (window_s * (os.cpu_count() or 1))
        if share <= max_share or time.monotonic() >= deadline:
            return share


def run_children(argvs: list[list[str]], env: dict[str, str] | None = None,
                 timeout: float | None = None
                 ) -> tuple[list[subprocess.CompletedProcess], float | None, float]:
    """Run the ``argvs`` side by side to completion: the processes (stdout, stderr captured),
    the foreign CPU share meanwhile, and the wall seconds until the last one ended.

    Past ``timeout`` seconds all are killed; each then has return code -9 and a last stderr
    line saying so."""
    busy0, own0, t0 = machine_busy_s(), _children_cpu_s(), time.perf_counter()
    running = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **(env or {})}) for argv in argvs]
    try:
        outputs = [proc.communicate(timeout=None if timeout is None else
                                    max(0.0, timeout - (time.perf_counter() - t0)))
                   for proc in running]
    except subprocess.TimeoutExpired:
        for proc in running:
            proc.kill()
        outputs = [(out, f"{err}\nstopped at the {timeout:.0f} s time limit")
                   for out, err in (proc.communicate() for proc in running)]
    busy1, own1, wall = machine_busy_s(), _children_cpu_s(), time.perf_counter() - t0
    share = None
    if busy0 is not None and busy1 is not None:
        foreign = max(0.0, (busy1 - busy0) - (own1 - own0))
        share = foreign / (wall * (os.cpu_count() or 1))
    done = [subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
            for proc, (out, err) in zip(running, outputs, strict=True)]
    return done, share, wall
