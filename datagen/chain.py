"""Solving one chain of samples: the stream of systems an engine sees, and the residual guard.

A chain is a list of global sample indices in solve order (:mod:`nopx.datagen.sorting`).
Its samples become one lazy stream of linear systems for one engine call, so whatever the
engine carries from system to system (a recycled space, a reused analysis, a refitted
hierarchy) flows along the whole chain. A :class:`~nopx.datagen.family.Trajectory`
contributes one system per time step, built from the previous step's solution (engines are
lazy: they yield ``x_t`` before they pull system ``t + 1``).

Every sample's true residual (the worst over its time steps) is checked against ``rtol``.
A sample that misses, or on which the engine fails (an ILU breakdown, a singular factor),
is an error naming it (``on_miss="error"``), or is solved again, alone, with a direct solve
and flagged ``retried`` (``on_miss="direct"``; after an engine failure the engine restarts
on the rest of the chain); if the direct solve misses or fails too, that is an error.
Nothing that misses ``rtol`` or is not finite is ever returned.

>>> from nopx.datagen import CellGrid, Darcy2D, DarcyConfig, build_solver
>>> darcy = Darcy2D(DarcyConfig(modes=4), grid=CellGrid(n=8, ndim=2), seed=0)
>>> results = solve_chain(darcy, build_solver("gcrodr", m=10, k=3), [4, 2, 7], rtol=1e-8)
>>> [r.index for r in results], all(r.residual <= 1e-8 for r in results), results[0].fields["u"].shape
([4, 2, 7], True, (8, 8))
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from nopx.datagen.faults import fault_point
from nopx.datagen.family import Problem, Trajectory
from nopx.datagen.solvers import DirectSolver, Solver, System
from nopx.errors import UserError

__all__ = ["SampleResult", "solve_chain"]


@dataclasses.dataclass(frozen=True)
class SampleResult:
    """One solved sample: stored fields (on the stored grid), params and its solver statistics.

    ``iterations``, ``matvecs`` and ``seconds`` add up over time steps and a retry;
    ``residual`` is the worst true relative residual of the kept solution.
    """

    index: int
    fields: dict[str, np.ndarray]
    params: np.ndarray
    iterations: int
    matvecs: int
    residual: float
    seconds: float
    retried: bool


@dataclasses.dataclass
class _Pending:
    """A sample while its systems are in the stream."""

    index: int
    problem: Problem | Trajectory
    records: list[np.ndarray] = dataclasses.field(default_factory=list)
    iterations: int = 0
    matvecs: int = 0
    residual: float = 0.0
    seconds: float = 0.0


def _stream(family: Any, indices: Sequence[int], queue: collections.deque,
            last: list[np.ndarray]) -> Iterator[System]:
    """The chain's systems; before each, ``queue`` gets ``(pending, step, is_last)``; ``last[0]`` is the newest ``x``."""
    for index in indices:
        pending = _Pending(index, family.problem(index))
        yield from _systems(pending, queue, last)


def _systems(pending: _Pending, queue: collections.deque, last: list[np.ndarray]) -> Iterator[System]:
    problem = pending.problem
    if isinstance(problem, Problem):
        queue.append((pending, 0, True))
        yield problem.matrix, problem.rhs
        return
    state = problem.initial
    pending.records.append(state)
    for step in range(problem.steps):
        queue.append((pending, step, step == problem.steps - 1))
        yield problem.matrix, problem.explicit @ state + problem.forcing
        state = last[0]


def _finish(family: Any, pending: _Pending, solution: np.ndarray, retried: bool) -> SampleResult:
    problem = pending.problem
    stored = np.stack(pending.records) if isinstance(problem, Trajectory) else solution
    fields = {name: family.grid.store(field) for name, field in family.fields_of(problem, stored).items()}
    return SampleResult(pending.index, fields, problem.params, pending.iterations, pending.matvecs,
                        pending.residual, pending.seconds, retried)


def _run(family: Any, solver: Solver, indices: Sequence[int]) -> Iterator[tuple[_Pending, np.ndarray]]:
    """Solve the chain with ``solver``: every sample once it is complete, with its last solution."""
    queue: collections.deque = collections.deque()
    last: list[np.ndarray] = [np.empty(0)]
    for x, stats in solver.solve(_stream(family, indices, queue, last)):
        last[0] = x
        pending, step, is_last = queue.popleft()
        pending.iterations += stats.iterations
        pending.matvecs += stats.matvecs
        pending.seconds += stats.seconds
        pending.residual = max(pending.residual, stats.residual) if np.isfinite(stats.residual) else np.inf
        problem = pending.problem
        if isinstance(problem, Trajectory) and (step + 1) % problem.every == 0:
            pending.records.append(x)
        if is_last:
            yield pending, x


# What an engine raises when it breaks down on a system (scipy's ILU/LU: RuntimeError).
ENGINE_ERRORS = (RuntimeError, ArithmeticError, np.linalg.LinAlgError)


def solve_chain(family: Any, solver: Solver, indices: Sequence[int], *, rtol: float,
                on_miss: str = "error") -> list[SampleResult]:
    """Solve global samples ``indices`` in this order with ``solver``; handle misses per ``on_miss``.

    Raises:
      UserError: a sample missed ``rtol`` or broke the engine (``on_miss="error"``), or the
        direct solve of a missed sample failed too; the message names the sample.
    """
    results: list[SampleResult] = []
    remaining = list(indices)
    while remaining:
        solved = _run(family, solver, remaining)
        for position, index in enumerate(remaining):
            try:
                pending, solution = next(solved)
            except ENGINE_ERRORS as err:
                failed = _Pending(index, family.problem(index), residual=np.inf)
                what = f"the engine failed ({type(err).__name__}: {err}), so it"
                results.append(_retry(family, failed, rtol, on_miss, what))
                remaining = remaining[position + 1:]  # a fresh engine call goes on with the rest
                break
            if pending.residual <= rtol:
                results.append(_finish(family, pending, solution, retried=False))
            else:
                what = f"relative residual {pending.residual:.2e}"
                results.append(_retry(family, pending, rtol, on_miss, what))
            fault_point("sample")
        else:
            remaining = []
    return results


def _retry(family: Any, missed: _Pending, rtol: float, on_miss: str, what: str) -> SampleResult:
    """The direct re-solve of a missed sample (``on_miss="direct"``), or the error naming it."""
    if on_miss != "direct":
        raise UserError(
            f"sample {missed.index}: {what} misses solver.rtol {rtol:.1e}; it was not stored. Choose a "
            f"more robust or accurate engine (solver.method/options) or relax solver.rtol, or pass "
            f"--set solver.on_miss=direct to redo such samples with a direct solve (flagged in meta/retried)")
    try:
        [(retry, solution)] = _run(family, DirectSolver(), [missed.index])
        reached, ok = f"relative residual {retry.residual:.2e}", retry.residual <= rtol
    except ENGINE_ERRORS as err:
        reached, ok = f"{type(err).__name__}: {err}", False
    if not ok:
        raise UserError(
            f"sample {missed.index}: {what} misses solver.rtol {rtol:.1e}, and so does its direct "
            f"re-solve ({reached}); the problem is singular or too ill-conditioned for this tolerance: "
            f"check the recipe's PDE parameters or relax solver.rtol")
    retry.iterations += missed.iterations
    retry.matvecs += missed.matvecs
    retry.seconds += missed.seconds
    return _finish(family, retry, solution, retried=True)
