"""``auto``: probe candidate engines on the first systems of a sequence, keep the fastest.

Each candidate solves ``probe`` systems of the sequence in turn (candidate 1 the first
``probe`` systems, candidate 2 the next, ...); a candidate whose residual misses ``rtol``
is out. The candidate with the least wall time on its last probe system (its steady
state: analysis or setup done once per sequence is not held against it) solves the rest.
The choice is reported in every later system's :attr:`SolveStats.engine` and logged.

>>> from nopx.datagen.stencil import diffusion_matrix
>>> systems = [(diffusion_matrix(np.ones((8, 8))), np.ones(64))] * 5
>>> results = list(AutoSolver(candidates=("direct", "amg"), probe=1).solve(systems))
>>> results[-1][1].engine in ("direct", "amg"), all(stats.residual < 1e-8 for _, stats in results)
(True, True)
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Iterable, Iterator

import numpy as np

from nopx.datagen.solvers import (SolveStats, Solver, System, available_solvers, build_solver, register_solver,
                                  solver_takes_rtol)

__all__ = ["AutoSolver"]

log = logging.getLogger("nopx.datagen")


def _feed(queue: collections.deque) -> Iterator[System]:
    while True:
        yield queue.popleft()


@dataclasses.dataclass(frozen=True)
class AutoSolver:
    """Probe ``candidates`` (registered engine names, default options) and keep the fastest.

    Args:
      candidates: engines to try, in order; those not registered or not loadable here
        (``pardiso`` without ``pypardiso`` or a working MKL) are skipped.
      probe: systems per candidate.
      rtol: the true relative residual to reach (a recipe passes ``solver.rtol``).
    """

    candidates: tuple[str, ...] = ("pardiso", "amg", "direct")
    probe: int = 2
    rtol: float = 1e-8

    def __post_init__(self) -> None:
        unknown = [name for name in self.candidates if name == "auto"]
        if unknown or self.probe < 1:
            raise ValueError(f"candidates: need engines other than auto and probe >= 1, got {self.candidates}")

    def solve(self, systems: Iterable[System]) -> Iterator[tuple[np.ndarray, SolveStats]]:
        built = {name: self._build(name) for name in self.candidates if name in available_solvers()}
        names = [name for name, engine in built.items() if engine is not None]
        queues = {name: collections.deque() for name in names}
        engines = {name: built[name].solve(_feed(queues[name])) for name in names}
        last_seconds = {}
        stream = iter(systems)
        for name in names:
            for _ in range(self.probe):
                system = next(stream, None)
                if system is None:
                    return
                queues[name].append(system)
                x, stats = next(engines[name])
                last_seconds[name] = stats.seconds if stats.residual <= self.rtol else np.inf
                yield x, dataclasses.replace(stats, engine=name)
        chosen = min(names, key=lambda name: last_seconds[name])
        log.info("auto: chose %s (probe seconds %s)", chosen,
                 {name: round(seconds, 4) for name, seconds in last_seconds.items()})
        for system in stream:
            queues[chosen].append(system)
            x, stats = next(engines[chosen])
            yield x, dataclasses.replace(stats, engine=chosen)

    def _build(self, name: str) -> Solver | None:
        """Candidate ``name`` with default options, or None if it cannot run here (MKL missing)."""
        try:
            return build_solver(name, **({"rtol": self.rtol} if solver_takes_rtol(name) else {}))
        except ValueError:
            return None


register_solver("auto", AutoSolver, takes_rtol=True)
