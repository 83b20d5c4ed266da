"""What training reads: a random-access source of samples, and the order it reads them in.

A :class:`Source` answers "the samples at these positions" and nothing else, so the
order, the split of each batch over processes and the prefetching live outside it
(:mod:`nopx.training.prefetch`). :class:`~nopx.training.data.Split` is one; a grain
``RandomAccessDataSource`` (``__len__``, ``__getitem__(i)`` → one record) fits behind an
adapter whose ``read`` stacks ``source[i]`` for each position.

The data order is a function of ``(seed, epoch)`` alone (:func:`epoch_batches`): every
process computes the same global batches, whatever the mesh or the number of processes,
so a run resumed on another set of hosts continues with the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np


class Source(Protocol):
    """Random access to ``(x, y)`` samples, channels-last."""

    def __len__(self) -> int: ...

    def read(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``x (n, *spatial, C_in)``, ``y (n, *spatial, C_out)`` for ``n`` positions, in order."""
        ...


def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The permutation of ``size`` positions that epoch ``epoch`` visits.

    >>> epoch_order(0, 1, 5).tolist() == epoch_order(0, 1, 5).tolist()
    True
    """
    return np.random.default_rng([seed, epoch]).permutation(size)


def epoch_batches(seed: int, epoch: int, size: int, batch_size: int,
                  start: int = 0) -> Iterator[np.ndarray]:
    """The positions ``(batch_size,)`` of batches ``start, start + 1, ...`` of an epoch
    (whole batches only: the remainder of the permutation is left out).

    >>> [b.tolist() for b in epoch_batches(0, 0, 5, 2, start=1)] == [
    ...     epoch_order(0, 0, 5)[2:4].tolist()]
    True
    """
    order = epoch_order(seed, epoch, size)
    for first in range(start * batch_size, size - batch_size + 1, batch_size):
        yield order[first:first + batch_size]
