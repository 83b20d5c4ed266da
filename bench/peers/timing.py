"""One timing loop for every side of a benchmark (standard library only)."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed_calls(fn: Callable[[], object], warmup: int, iters: int) -> dict:
    """The first call timed apart (it compiles on the JAX side), ``warmup`` untimed calls,
    then ``iters`` timed ones: their median and all times in ms, and the kernel CPU time
    and minor page faults per timed call (fresh memory mapped on every call shows there)."""
    t0 = time.perf_counter()
    fn()
    first_s = time.perf_counter() - t0
    for _ in range(warmup):
        fn()
    times = []
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"first_s": first_s, "ms_median": statistics.median(times), "ms_min": min(times),
            "ms_all": times, "sys_ms": (ru1.ru_stime - ru0.ru_stime) / iters * 1e3,
            "minor_faults": (ru1.ru_minflt - ru0.ru_minflt) / iters}


def step_report(n_params: int, train: dict, forward: dict, losses: list[float],
                rss_import: float, rss_forward: float, versions: dict[str, str]) -> dict:
    """The one result record both sides of ``train_step.py`` print (peak RSS read now)."""
    return {"params_real": n_params, "train": train, "forward": forward,
            "loss_first_last": [losses[0], losses[-1]],
            "rss_mib": {"after_import": rss_import, "peak_forward": rss_forward,
                        "peak_train": peak_rss_mib()},
            "versions": versions}
