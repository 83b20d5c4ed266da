"""The datagen runner: a recipe in, a complete, verified HDF5 dataset out.

The samples are split into chains (:func:`~nopx.datagen.sorting.plan_chains`: similar
samples together, each chain in nearest-neighbour order when ``solver.sort``, else blocks
of consecutive indices; at most ``solver.chain`` long). A chain is the sequence one engine
call solves (:func:`~nopx.datagen.chain.solve_chain`), in this process or in a pool of
``workers`` processes; this process is the only HDF5 writer, and it writes a chain at
once. Every sample's true residual is checked against ``solver.rtol``: a sample the engine
missed (or broke down on) stops the run with a :class:`~nopx.errors.UserError` naming it,
unless ``solver.on_miss: direct``, which redoes it by a direct solve and flags it in
``meta/retried``. Nothing non-finite or above ``rtol`` is ever stored. A killed run loses
at most the chains in flight; ``resume=True`` plans the same chains (they depend only on
the recipe), solves every chain that has an unwritten sample from its start, and writes
only the missing samples, so the result equals an uninterrupted run even for engines that
carry state along a chain. A worker process that dies stops the run with an error.

``shard=(i, count)`` writes only the ``i``-th of ``count`` contiguous blocks of samples to
its own file (for cluster schedulers); :func:`merge` joins the parts.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import os
import pathlib
import queue
import sys
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

import numpy as np
import yaml

from nopx.datagen.blas_threads import blas_threads
from nopx.datagen.chain import solve_chain
from nopx.datagen.dataset import DatasetReader, DatasetWriter, open_dataset
from nopx.datagen.faults import fault_point
from nopx.datagen.family import BatchFamily, Family, Problem, family_attrs, sample_features, stored_shapes
from nopx.datagen.recipe import Recipe, differing_keys, recipe_from_mapping
from nopx.datagen.solvers import Solver
from nopx.datagen.sorting import plan_chains
from nopx.errors import UserError

__all__ = ["generate", "merge", "shard_path", "plan"]

#: Samples per write when merging shards.
MERGE_BLOCK = 16
#: Stored values (samples x points) below which one process does the whole job by default:
#: starting a worker costs about a second of imports, about what such a job takes in total.
SMALL_JOB = 1_000_000


@dataclasses.dataclass(frozen=True)
class _Chunk:
    """A solved chain's unwritten samples: local indices (in solve order), stored fields, params and stats."""

    indices: list[int]
    fields: dict[str, np.ndarray]
    params: np.ndarray
    iterations: list[int]
    matvecs: list[int]
    residual: list[float]
    seconds: list[float]
    retried: list[bool]


_BUILT: dict[str, tuple[Family, Solver]] = {}


def _built(recipe: Recipe) -> tuple[Family, Solver]:
    """The recipe's family and solver, built once per process."""
    key = recipe.to_yaml()
    if key not in _BUILT:
        _BUILT[key] = (recipe.family(), recipe.solver.build())
    return _BUILT[key]


def _solve_chunk(task: tuple[Recipe, int, list[int], frozenset[int]]) -> _Chunk:
    """Solve the chain of local samples ``chain`` (global ``first + i``), keep those in ``todo``; runs in a worker."""
    recipe, first, chain, todo = task
    family, solver = _built(recipe)
    if hasattr(family, "generate_batch"):
        return _batch_chunk(recipe, family, first, [i for i in chain if i in todo])
    results = [r for r in solve_chain(family, solver, [first + i for i in chain], rtol=recipe.solver.rtol,
                                      on_miss=recipe.solver.on_miss)
               if r.index - first in todo]
    dtype = recipe.storage.dtype
    return _Chunk(
        indices=[r.index - first for r in results],
        fields={name: np.stack([r.fields[name] for r in results]).astype(dtype) for name in family.fields},
        params=np.stack([r.params for r in results]).astype(dtype),
        iterations=[r.iterations for r in results],
        matvecs=[r.matvecs for r in results],
        residual=[r.residual for r in results],
        seconds=[r.seconds for r in results],
        retried=[r.retried for r in results],
    )


def _batch_chunk(recipe: Recipe, family: BatchFamily, first: int, indices: list[int]) -> _Chunk:
    """Local samples ``indices`` made together by a batch family (no solver, nothing retried)."""
    batch = family.generate_batch([first + i for i in indices])
    dtype = recipe.storage.dtype
    return _Chunk(indices=list(indices), fields={k: v.astype(dtype) for k, v in batch.fields.items()},
                  params=batch.params.astype(dtype), iterations=batch.iterations, matvecs=batch.matvecs,
                  residual=batch.residual, seconds=batch.seconds, retried=[False] * len(indices))


def plan(recipe: Recipe, family: Family, first: int, count: int) -> list[list[int]]:
    """The chains of local samples ``0 .. count-1`` (global ``first + i``), each in solve order.

    A batch family gets blocks of ``batch_size`` consecutive samples.
    """
    if hasattr(family, "generate_batch"):
        size = family.batch_size
        return [list(range(lo, min(lo + size, count))) for lo in range(0, count, size)]
    features = np.stack([sample_features(family, first + i) for i in range(count)])
    return plan_chains(features, recipe.solver.chain, sort=recipe.solver.sort)


def block_size(recipe: Recipe) -> int:
    """Samples one engine call makes: a batch family's ``batch_size``, else ``solver.chain``."""
    family, _ = _built(recipe)
    return family.batch_size if hasattr(family, "generate_batch") else recipe.solver.chain


def solve_block(recipe: Recipe, first: int, count: int) -> Iterator[_Chunk]:
    """Global samples ``first .. first + count - 1``, made in this process as :func:`generate`
    makes a file of them (one chunk per planned chain), but kept in memory (online data)."""
    family, _ = _built(recipe)
    every = frozenset(range(count))
    for chain in plan(recipe, family, first, count):
        yield _solve_chunk((recipe, first, chain, every))


def shard_path(out: str | pathlib.Path, shard: tuple[int, int]) -> pathlib.Path:
    """Default file of a shard: ``data/x.h5`` → ``data/x.shard1of4.h5``.

    >>> shard_path("data/x.h5", (1, 4)).as_posix()
    'data/x.shard1of4.h5'
    """
    out = pathlib.Path(out)
    return out.with_name(f"{out.stem}.shard{shard[0]}of{shard[1]}{out.suffix}")


def _block(samples: int, shard: tuple[int, int] | None) -> tuple[int, int]:
    """The local sample range ``[start, stop)`` of ``shard`` (all samples without one)."""
    if shard is None:
        return 0, samples
    index, count = shard
    if not 0 <= index < count or count > samples:
        raise UserError(f"--shard {index}/{count}: need 0 <= i < N <= samples ({samples})")
    return index * samples // count, (index + 1) * samples // count


def _attrs(recipe: Recipe, family: Family, first_index: int, shard: tuple[int, int] | None) -> dict[str, Any]:
    attrs = {
        "pde": recipe.pde,
        "recipe": recipe.to_yaml(),
        "seed": recipe.seed,
        "first_index": first_index,
        **family.grid.attrs(),
        **family_attrs(family),
    }
    if shard is not None:
        attrs.update(shard_index=shard[0], shard_count=shard[1])
    return attrs


def _check_same_recipe(path: pathlib.Path, attrs: dict[str, Any], recipe: Recipe,
                       shard: tuple[int, int] | None) -> None:
    """Refuse to resume ``path`` with a recipe (or shard) other than the one that made it."""
    old = yaml.safe_load(attrs["recipe"])
    # out names a file, on_miss a policy: neither changes a stored sample.
    changed = [key for key in differing_keys(old, recipe.to_mapping()) if key not in ("out", "solver.on_miss")]
    if changed:
        key = changed[0]
        was, now = _lookup(old, key), _lookup(recipe.to_mapping(), key)
        raise UserError(f"{path}: made by a different recipe ({key} is {was!r} in the file, "
                        f"{now!r} now); resume with the recipe that made it (`nopx info {path}` "
                        f"prints it) or write to a new file with --out")
    file_shard = (attrs["shard_index"], attrs["shard_count"]) if "shard_count" in attrs else None
    if file_shard != (tuple(shard) if shard else None):
        raise UserError(f"{path}: holds shard {file_shard} but --shard asks for {shard}; "
                        f"pass the same --shard to resume it")


def _lookup(mapping: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        mapping = mapping.get(part) if isinstance(mapping, dict) else None
    return mapping


def _results(tasks: list[tuple[Recipe, int, list[int], frozenset[int]]],
             workers: int) -> Generator[_Chunk, None, None]:
    """The solved chains, as they finish: this process solves chains too, beside ``workers - 1`` others."""
    with blas_threads(1):  # the env below only reaches libraries not loaded yet
        if workers == 1:
            yield from map(_solve_chunk, tasks)
            return
        # Workers already share the cores: one BLAS/MKL thread each (threads spin-waiting on a
        # busy core slow dense Krylov kernels several-fold), unless the caller chose otherwise.
        # A pool of futures, not multiprocessing.Pool: a worker that dies (killed, out of memory)
        # breaks it with an error instead of hanging the run. This process takes the next chain
        # whenever it is free, so it starts solving while the pool's processes still start.
        method = _start_method()
        if method == "fork":  # the workers inherit the built engine with its compiled kernels
            _warm_up(*tasks[0][:3])
        context = multiprocessing.get_context(method)
        todo, lock, finished = collections.deque(tasks), threading.Lock(), queue.SimpleQueue()

        def next_task() -> tuple[Recipe, int, list[int], frozenset[int]] | None:
            with lock:
                return todo.popleft() if todo else None

        with _single_threaded_children(), concurrent.futures.ProcessPoolExecutor(workers - 1, mp_context=context) as pool:

            def submit(_: object = None) -> None:  # one chain running and one queued per pool process
                if (task := next_task()) is not None:
                    with contextlib.suppress(RuntimeError):  # the pool shut down (an error stopped the run)
                        future = pool.submit(_solve_chunk, task)
                        future.add_done_callback(finished.put)
                        future.add_done_callback(submit)

            for _ in range(2 * (workers - 1)):
                submit()
            try:
                for _ in tasks:
                    if finished.empty() and (task := next_task()) is not None:
                        yield _solve_chunk(task)
                    else:
                        yield finished.get().result()
            except concurrent.futures.process.BrokenProcessPool:
                raise UserError(f"a solver worker process died (killed by a signal or out of memory; if "
                                f"memory is short, use fewer --workers than {workers})") from None
            finally:
                with lock:
                    todo.clear()
                pool.shutdown(cancel_futures=True)


def _start_method() -> str:
    """How solver processes start: ``fork`` on Linux while JAX is not loaded, else ``spawn``.

    A forked worker starts at once with this process's imports and built engine (a spawned
    one spends about a second importing and loading compiled kernels, as long as its first
    chain takes). Never fork a process holding JAX's threads; on macOS fork is unsafe. The
    open HDF5 file is never touched by a worker, and a forked worker leaves by ``os._exit``,
    which runs no finalisers on it.
    """
    return "fork" if sys.platform == "linux" and "jax" not in sys.modules else "spawn"


def _warm_up(recipe: Recipe, first: int, chain: list[int]) -> None:
    """Build the recipe's engine here and let it load what it compiles, for forked workers to inherit.

    It warms up on the chain's first system (what an engine loads can depend on it: the
    candidates of ``auto`` that apply), where the family makes single systems.
    """
    family, solver = _built(recipe)
    if hasattr(solver, "warm_up"):
        problem = None if hasattr(family, "generate_batch") else family.problem(first + chain[0])
        solver.warm_up((problem.matrix, problem.rhs) if isinstance(problem, Problem) else None)


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers(family: Family | BatchFamily, samples: int, chains: int) -> int:
    """One worker per usable core (at most one per chain), or 1 for a job under :data:`SMALL_JOB`."""
    values = samples * sum(int(np.prod(shape)) for shape in stored_shapes(family).values())
    return 1 if values < SMALL_JOB else max(1, min(usable_cores(), chains))


@contextlib.contextmanager
def _single_threaded_children() -> Generator[None, None, None]:
    names = [name for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
             if name not in os.environ]
    os.environ.update({name: "1" for name in names})
    try:
        yield
    finally:
        for name in names:
            os.environ.pop(name, None)


def generate(
    recipe: Recipe,
    out: str | pathlib.Path | None = None,
    *,
    resume: bool = False,
    workers: int | None = None,
    shard: tuple[int, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    executor: str = "local",
    address: str | None = None,
) -> pathlib.Path:
    """Generate the dataset of ``recipe`` into ``out`` (default ``recipe.out``, or its shard file).

    Args:
      recipe: the parsed recipe (:func:`~nopx.datagen.load_recipe`).
      out: the HDF5 file to write.
      resume: complete an existing, incomplete file made by the same recipe; without it an
        existing file is an error.
      workers: solver processes, this one included: it writes, and solves a chain whenever
        it is free (the others are forked where safe, else started with ``spawn``: a script
        calling this needs the ``if __name__ == "__main__":`` guard). ``None``:
        :func:`default_workers`. Every solver process, this one included, runs its BLAS on
        one thread (:mod:`~nopx.datagen.blas_threads`).
      shard: ``(i, count)``: write only the ``i``-th of ``count`` contiguous blocks.
      progress: called as ``progress(done, total)`` at the start and after every chunk.
      executor: ``local`` (this machine's processes) or ``ray``: the same chains as Ray
        tasks (:mod:`nopx.datagen.ray_executor`; the file is the same, bit for bit).
      address: the Ray cluster to join (``ray`` only; default: a local instance with
        ``workers`` CPUs).

    Returns:
      The path of the complete file.
    """
    if workers is not None and workers < 1:
        raise UserError(f"--workers {workers}: need at least one worker")
    if executor not in ("local", "ray"):
        raise UserError(f"--executor {executor}: unknown; use local or ray")
    if address is not None and executor != "ray":
        raise UserError("--address names a Ray cluster: add --executor ray, or drop --address")
    if executor == "ray":
        from nopx.datagen import ray_executor

        ray_executor.require_ray()  # a missing Ray is reported before a file is touched
    path = pathlib.Path(out) if out is not None else (
        pathlib.Path(recipe.out) if shard is None else shard_path(recipe.out, shard))
    start, stop = _block(recipe.samples, shard)
    family = recipe.family()
    if path.exists():
        if not resume:
            raise UserError(f"{path}: exists; pass --resume to complete it, or delete it")
        writer = DatasetWriter.resume(path)
        _check_same_recipe(path, writer.attrs, recipe, shard)
    else:
        writer = DatasetWriter.create(
            path,
            n_samples=stop - start,
            fields=stored_shapes(family),
            n_params=family.n_params,
            dtype=recipe.storage.dtype,
            attrs=_attrs(recipe, family, recipe.first_index + start, shard),
        )
    with writer:
        fault_point("start")
        if writer.complete:
            return path
        done = writer.done()
        total, finished = done.size, int(done.sum())
        if progress:
            progress(finished, total)
        first = recipe.first_index + start
        todo = frozenset(np.flatnonzero(~done).tolist())
        tasks = [(recipe, first, chain, todo & frozenset(chain))
                 for chain in plan(recipe, family, first, total) if todo.intersection(chain)]
        if workers is None:
            workers = default_workers(family, len(todo), len(tasks))
        if executor == "ray":
            solved = ray_executor.ray_map(_solve_chunk, tasks, address=address, workers=workers)
        else:
            solved = _results(tasks, workers)
        with contextlib.closing(solved) as results:
            for chunk in _kept_on_failure(results, path):
                writer.write(chunk.indices, chunk.fields, chunk.params, iterations=chunk.iterations,
                             matvecs=chunk.matvecs, residual=chunk.residual, seconds=chunk.seconds,
                             retried=chunk.retried)
                finished += len(chunk.indices)
                if progress:
                    progress(finished, total)
        writer.finish(recipe.solver.rtol)
    return path


def _kept_on_failure(results: Iterator[_Chunk], path: pathlib.Path) -> Iterator[_Chunk]:
    """``results``; a failed solve's error also names ``path`` and what is kept."""
    try:
        yield from results
    except UserError as err:
        raise UserError(f"{path}: {err}. The samples written so far are kept: --resume goes on from "
                        f"them with the same recipe, in which only solver.on_miss may change") from None


def merge(parts: Sequence[str | pathlib.Path], out: str | pathlib.Path) -> pathlib.Path:
    """Join the complete shard files of one recipe (``--shard i/N`` for every i) into ``out``."""
    readers = [open_dataset(p) for p in parts]
    try:
        return _merge(readers, pathlib.Path(out))
    finally:
        for reader in readers:
            reader.close()


def _merge(readers: list[DatasetReader], out: pathlib.Path) -> pathlib.Path:
    first = readers[0]
    for reader in readers:
        if "shard_count" not in reader.attrs:
            raise UserError(f"{reader.path}: not a shard (made without --shard); nothing to merge")
        if reader.attrs["recipe"] != first.attrs["recipe"]:
            raise UserError(f"{reader.path}: made by a different recipe than {first.path}")
    count = first.attrs["shard_count"]
    readers = sorted(readers, key=lambda r: r.attrs["shard_index"])
    if [r.attrs["shard_index"] for r in readers] != list(range(count)) or any(
            r.attrs["shard_count"] != count for r in readers):
        raise UserError(f"merge: need each of the shards 0..{count - 1} of {count} exactly once, got "
                        f"{', '.join(str(r.path) for r in readers)}")
    if out.exists():
        raise UserError(f"{out}: exists; delete it or merge into a new file")
    recipe = recipe_from_mapping(yaml.safe_load(first.attrs["recipe"]), where=str(first.path))
    family = recipe.family()
    with DatasetWriter.create(
        out,
        n_samples=recipe.samples,
        fields={name: first.field_shape(name) for name in first.fields},
        n_params=first.meta("params").shape[1],
        dtype=recipe.storage.dtype,
        attrs=_attrs(recipe, family, recipe.first_index, None),
    ) as writer:
        stats = ("iterations", "matvecs", "residual", "seconds", "retried")
        offset = 0
        for reader in readers:
            meta = {name: reader.meta(name) for name in ("params", *stats)}
            for lo in range(0, reader.n_samples, MERGE_BLOCK):
                hi = min(lo + MERGE_BLOCK, reader.n_samples)
                writer.write(range(offset + lo, offset + hi),
                             {name: reader.read_range(name, lo, hi) for name in reader.fields},
                             meta["params"][lo:hi], **{name: meta[name][lo:hi] for name in stats})
            offset += reader.n_samples
        writer.finish(recipe.solver.rtol)
    return out
