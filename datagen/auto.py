"""``auto``: probe candidate engines on the first systems of a sequence, keep the fastest.

Each candidate solves ``1 + probe`` systems of the sequence in turn (candidate 1 the first
ones, candidate 2 the next, ...). The first is a warm-up whose time is not compared: it
carries what an engine does once per sequence (PARDISO's analysis, an AMG hierarchy, loading
MKL), which timed alone would hand a one-system probe to whatever has no setup. A candidate
whose residual misses ``rtol`` on any probe is out; the one with the least mean wall time
over its timed probes solves the rest. The choice is kept for later sequences of the same
matrix size in this process (a worker solving several chains probes once), reported in
every later system's :attr:`SolveStats.engine` and logged.

>>> from nopx.datagen.stencil import diffusion_matrix
>>> systems = [(diffusion_matrix(np.ones((8, 8))), np.ones(64))] * 5
>>> results = list(AutoSolver(candidates=("direct", "amg"), probe=1).solve(systems))
>>> results[-1][1].engine in ("direct", "amg"), all(stats.residual < 1e-8 for _, stats in results)
(True, True)
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import logging
from collections.abc import Generator, Iterable, Iterator

import numpy as np

from nopx.datagen.solvers import (SolveStats, Solver, System, available_solvers, build_solver, register_solver,
                                  solver_takes_rtol)

__all__ = ["AutoSolver"]

log = logging.getLogger("nopx.datagen")


def _feed(queue: collections.deque) -> Iterator[System]:
    while True:
        yield queue.popleft()


def _drive(engine: Iterator, queue: collections.deque, stream: Iterator[System]) -> Iterator:
    """``engine``'s results on the rest of ``stream`` (it reads its systems from ``queue``)."""
    for system in stream:
        queue.append(system)
        yield next(engine)


@dataclasses.dataclass(frozen=True)
class AutoSolver:
    """Probe ``candidates`` (registered engine names, default options) and keep the fastest.

    Args:
      candidates: engines to try, in order; those not registered or not loadable here
        (``pardiso`` without ``pypardiso`` or a working MKL) are skipped.
      probe: timed systems per candidate (after its warm-up system).
      rtol: the true relative residual to reach (a recipe passes ``solver.rtol``).
    """

    candidates: tuple[str, ...] = ("gmg", "pardiso", "amg", "direct")
    probe: int = 1
    rtol: float = 1e-8
    # matrix shape -> chosen engine, for later sequences in this process (not part of equality)
    _chosen: dict[tuple[int, ...], str] = dataclasses.field(default_factory=dict, init=False,
                                                             repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = [name for name in self.candidates if name == "auto"]
        if unknown or self.probe < 1:
            raise ValueError(f"candidates: need engines other than auto and probe >= 1, got {self.candidates}")

    def solve(self, systems: Iterable[System]) -> Iterator[tuple[np.ndarray, SolveStats]]:
        stream = iter(systems)
        first = next(stream, None)
        if first is None:
            return
        stream = itertools.chain([first], stream)
        shape = first[0].shape
        if shape in self._chosen:
            chosen = self._chosen[shape]
            engine = self._build(chosen).solve(stream)
        else:
            probed = yield from self._probe(stream)
            if probed is None:  # the sequence ended inside the probe
                return
            chosen, engine = probed
            self._chosen[shape] = chosen
        for x, stats in engine:
            yield x, dataclasses.replace(stats, engine=chosen)

    def _probe(self, stream: Iterator[System]) -> Generator[
            tuple[np.ndarray, SolveStats], None, tuple[str, Iterator] | None]:
        """Solve each candidate's warm-up and timed systems; return the winner and its engine
        fed by the rest of ``stream`` (it keeps its analysis), or None if ``stream`` ran out."""
        built = {name: self._build(name) for name in self.candidates if name in available_solvers()}
        names = [name for name, engine in built.items() if engine is not None]
        queues = {name: collections.deque() for name in names}
        engines = {name: built[name].solve(_feed(queues[name])) for name in names}
        mean_seconds, refused = {}, {}
        for name in names:
            seconds, missed = [], False
            for n in range(1 + self.probe):
                system = next(stream, None)
                if system is None:
                    return None
                queues[name].append(system)
                try:
                    x, stats = next(engines[name])
                except ValueError as err:  # not this engine's kind of matrix (gmg: no grid stencil)
                    log.info("auto: %s does not apply (%s)", name, err)
                    stream, refused[name] = itertools.chain([system], stream), err
                    break
                missed |= not stats.residual <= self.rtol
                seconds += [stats.seconds] if n > 0 else []
                yield x, dataclasses.replace(stats, engine=name)
            if name not in refused:
                mean_seconds[name] = np.inf if missed else float(np.mean(seconds))
        if not mean_seconds:
            raise ValueError(f"auto: no candidate applies to this matrix: {refused}")
        chosen = min(mean_seconds, key=lambda name: mean_seconds[name])
        log.info("auto: chose %s (mean probe seconds %s)", chosen,
                 {name: round(seconds, 4) for name, seconds in mean_seconds.items()})
        return chosen, _drive(engines[chosen], queues[chosen], stream)

    def warm_up(self, system: System | None = None) -> None:
        """Let every candidate that compiles kernels load them (see :func:`~nopx.datagen.runner.generate`)."""
        for name in self.candidates:
            if name in available_solvers() and hasattr(engine := self._build(name), "warm_up"):
                with contextlib.suppress(ValueError):  # a candidate that does not apply to ``system``
                    engine.warm_up(system)

    def _build(self, name: str) -> Solver | None:
        """Candidate ``name`` with default options, or None if it cannot run here (MKL missing)."""
        try:
            return build_solver(name, **({"rtol": self.rtol} if solver_takes_rtol(name) else {}))
        except ValueError:
            return None


register_solver("auto", AutoSolver, takes_rtol=True)
