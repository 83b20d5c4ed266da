"""The datagen runner: a recipe in, a complete, verified HDF5 dataset out.

Samples are solved in chunks of consecutive indices (a chunk is the sequence handed to the
solver engine), by this process or by a pool of ``workers`` processes; this process is the
only HDF5 writer. Every sample's true residual is checked against ``solver.rtol`` before it
is stored: a miss stops the run with a :class:`~nopx.errors.UserError`. A killed run loses
at most the chunks in flight; ``resume=True`` finishes the file, and since sample ``i``
depends only on ``(seed, i)`` the result equals an uninterrupted run.

``shard=(i, count)`` writes only the ``i``-th of ``count`` contiguous blocks of samples to
its own file (for cluster schedulers); :func:`merge` joins the parts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import pathlib
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np
import yaml

from nopx.datagen.dataset import DatasetReader, DatasetWriter, open_dataset
from nopx.datagen.family import Family
from nopx.datagen.recipe import Recipe, differing_keys, recipe_from_mapping
from nopx.datagen.solvers import Solver
from nopx.errors import UserError

__all__ = ["generate", "merge", "shard_path"]

MAX_CHUNK = 16


@dataclasses.dataclass(frozen=True)
class _Chunk:
    """A solved chunk: local indices (in solve order), stored fields, params and solver stats."""

    indices: list[int]
    fields: dict[str, np.ndarray]
    params: np.ndarray
    iterations: list[int]
    matvecs: list[int]
    residual: list[float]
    seconds: list[float]


_BUILT: dict[str, tuple[Family, Solver]] = {}


def _built(recipe: Recipe) -> tuple[Family, Solver]:
    """The recipe's family and solver, built once per process."""
    key = recipe.to_yaml()
    if key not in _BUILT:
        _BUILT[key] = (recipe.family(), recipe.solver.build())
    return _BUILT[key]


def _solve_chunk(task: tuple[Recipe, int, list[int]]) -> _Chunk:
    """Solve local samples ``indices`` (global index ``first + i``); runs in a worker process."""
    recipe, first, indices = task
    family, solver = _built(recipe)
    problems = [family.problem(first + i) for i in indices]
    solutions = solver.solve([(p.matrix, p.rhs) for p in problems])
    stored = [family.fields_of(p, x) for p, (x, _) in zip(problems, solutions, strict=True)]
    dtype = recipe.storage.dtype
    stats = [s for _, s in solutions]
    return _Chunk(
        indices=list(indices),
        fields={name: np.stack([family.grid.store(f[name]) for f in stored]).astype(dtype)
                for name in family.fields},
        params=np.stack([p.params for p in problems]).astype(dtype),
        iterations=[s.iterations for s in stats],
        matvecs=[s.matvecs for s in stats],
        residual=[s.residual for s in stats],
        seconds=[s.seconds for s in stats],
    )


def _chunks(todo: np.ndarray, workers: int) -> list[list[int]]:
    """Split the sorted to-do indices into runs of consecutive indices, at most ``MAX_CHUNK`` long.

    >>> _chunks(np.array([0, 1, 2, 3, 4, 7, 8]), workers=1)
    [[0, 1], [2, 3], [4], [7, 8]]
    """
    if todo.size == 0:
        return []
    size = max(1, min(MAX_CHUNK, math.ceil(todo.size / (4 * workers))))
    runs = np.split(todo, np.flatnonzero(np.diff(todo) != 1) + 1)
    return [piece.tolist() for run in runs for piece in np.array_split(run, math.ceil(run.size / size))]


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
    }
    if shard is not None:
        attrs.update(shard_index=shard[0], shard_count=shard[1])
    return attrs


def _check_same_recipe(path: pathlib.Path, attrs: dict[str, Any], recipe: Recipe,
                       shard: tuple[int, int] | None) -> None:
    """Refuse to resume ``path`` with a recipe (or shard) other than the one that made it."""
    old = yaml.safe_load(attrs["recipe"])
    changed = [key for key in differing_keys(old, recipe.to_mapping()) if key != "out"]
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


def _results(tasks: list[tuple[Recipe, int, list[int]]], workers: int) -> Generator[_Chunk, None, None]:
    if workers == 1:
        yield from map(_solve_chunk, tasks)
        return
    # spawn: never fork a process that may hold JAX/BLAS threads or an open HDF5 file.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_solve_chunk, tasks)


def generate(
    recipe: Recipe,
    out: str | pathlib.Path | None = None,
    *,
    resume: bool = False,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pathlib.Path:
    """Generate the dataset of ``recipe`` into ``out`` (default ``recipe.out``, or its shard file).

    Args:
      recipe: the parsed recipe (:func:`~nopx.datagen.load_recipe`).
      out: the HDF5 file to write.
      resume: complete an existing, incomplete file made by the same recipe; without it an
        existing file is an error.
      workers: solver processes (started with ``spawn``: a script calling this needs the
        ``if __name__ == "__main__":`` guard); the calling process writes.
      shard: ``(i, count)``: write only the ``i``-th of ``count`` contiguous blocks.
      progress: called as ``progress(done, total)`` at the start and after every chunk.

    Returns:
      The path of the complete file.
    """
    if workers < 1:
        raise UserError(f"--workers {workers}: need at least one worker")
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
            fields={name: family.grid.stored_shape for name in family.fields},
            n_params=family.n_params,
            dtype=recipe.storage.dtype,
            attrs=_attrs(recipe, family, recipe.first_index + start, shard),
        )
    with writer:
        if writer.attrs["complete"]:
            return path
        done = writer.done()
        total, finished = done.size, int(done.sum())
        if progress:
            progress(finished, total)
        first = recipe.first_index + start
        tasks = [(recipe, first, chunk) for chunk in _chunks(np.flatnonzero(~done), workers)]
        with contextlib.closing(_results(tasks, workers)) as results:
            for chunk in results:
                _check_residuals(path, recipe, first, chunk)
                writer.write(chunk.indices, chunk.fields, chunk.params, iterations=chunk.iterations,
                             matvecs=chunk.matvecs, residual=chunk.residual, seconds=chunk.seconds)
                finished += len(chunk.indices)
                if progress:
                    progress(finished, total)
        writer.finish(recipe.solver.rtol)
    return path


def _check_residuals(path: pathlib.Path, recipe: Recipe, first: int, chunk: _Chunk) -> None:
    rtol = recipe.solver.rtol
    for index, residual in zip(chunk.indices, chunk.residual, strict=True):
        if not residual <= rtol:
            raise UserError(
                f"{path}: sample {first + index} reached relative residual {residual:.2e} > "
                f"solver.rtol {rtol:.1e} with solver '{recipe.solver.method}'; choose a more "
                f"accurate solver (solver.method/options) or relax solver.rtol and write a new "
                f"file (the {path} samples written so far were made with the old settings)")


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
        fields={name: first.spatial_shape for name in first.fields},
        n_params=first.meta("params").shape[1],
        dtype=recipe.storage.dtype,
        attrs=_attrs(recipe, family, recipe.first_index, None),
    ) as writer:
        stats = ("iterations", "matvecs", "residual", "seconds")
        offset = 0
        for reader in readers:
            meta = {name: reader.meta(name) for name in ("params", *stats)}
            for lo in range(0, reader.n_samples, MAX_CHUNK):
                hi = min(lo + MAX_CHUNK, reader.n_samples)
                writer.write(range(offset + lo, offset + hi),
                             {name: reader.read_range(name, lo, hi) for name in reader.fields},
                             meta["params"][lo:hi], **{name: meta[name][lo:hi] for name in stats})
            offset += reader.n_samples
        writer.finish(recipe.solver.rtol)
    return out
