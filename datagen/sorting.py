"""Ordering a dataset's samples into chains of similar systems (SKR's sorting, made scalable).

An engine that carries information from one system to the next (a recycled Krylov space, a
refitted AMG hierarchy, a reused analysis) gains most when consecutive systems are close.
Each sample has a feature vector (its family's ``features(index)``: e.g. the low-frequency
modes of its coefficient), and

* :func:`greedy_chain` is SKR's Algorithm 1: start at the first sample and repeatedly step
  to the nearest unvisited one, ``O(N²)`` distances;
* :func:`plan_chains` scales it: project the features onto their leading principal
  components, order the samples along a Hilbert curve in that low-dimensional box, cut the
  curve into chunks of ``length``, and run the greedy chain inside each chunk. The chunks
  are the chains the runner hands to workers; similar samples land in the same chain.

Everything is deterministic in the features, so a resumed run plans the same chains.

>>> features = np.array([[0.0], [5.0], [1.0], [6.0], [2.0]])
>>> greedy_chain(features).tolist()
[0, 2, 4, 1, 3]
>>> plan_chains(features, length=3)
[[0, 2, 4], [1, 3]]
"""

from __future__ import annotations

import numpy as np

__all__ = ["greedy_chain", "hilbert_order", "principal_coordinates", "plan_chains"]


def greedy_chain(features: np.ndarray, start: int = 0) -> np.ndarray:
    """The nearest-neighbour chain through all rows of ``features`` ``(N, F)`` from row ``start``: ``(N,)``."""
    count = features.shape[0]
    order = np.empty(count, dtype=np.int64)
    unvisited = np.ones(count, dtype=bool)
    current = start
    for step in range(count):
        order[step] = current
        unvisited[current] = False
        if step + 1 < count:
            candidates = np.flatnonzero(unvisited)
            distances = np.linalg.norm(features[candidates] - features[current], axis=1)
            current = int(candidates[np.argmin(distances)])
    return order


def principal_coordinates(features: np.ndarray, dims: int) -> np.ndarray:
    """The first ``dims`` principal-component scores of ``features`` ``(N, F)``, scaled into ``[0, 1)``.

    Returns shape ``(N, dims)``.
    """
    centred = features - features.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    scores = centred @ components[:dims].T
    low, span = scores.min(axis=0), np.ptp(scores, axis=0)
    return (scores - low) / np.where(span > 0, span * (1 + 1e-9), 1.0)


def hilbert_order(points: np.ndarray, bits: int = 10) -> np.ndarray:
    """The order of ``points`` ``(N, d)`` in ``[0, 1)^d`` along a ``d``-dimensional Hilbert curve: ``(N,)``.

    Skilling's transposition algorithm (AIP Conf. Proc. 707, 2004) on a ``2^bits`` grid per
    axis; neighbours on the curve are neighbours in space.

    >>> hilbert_order(np.array([[0.9, 0.1], [0.1, 0.1], [0.1, 0.9], [0.9, 0.9]]), bits=1).tolist()
    [1, 2, 3, 0]
    """
    count, dims = points.shape
    if dims * bits > 62:
        raise ValueError(f"bits: {dims} x {bits} bits do not fit a 64-bit key")
    X = np.minimum((points * (1 << bits)).astype(np.int64), (1 << bits) - 1).T.copy()
    q = 1 << (bits - 1)
    while q > 1:  # undo excess work: the inverse Gray-code rotations
        p = q - 1
        for i in range(dims):
            high = (X[i] & q) != 0
            X[0] = np.where(high, X[0] ^ p, X[0])
            t = np.where(high, 0, (X[0] ^ X[i]) & p)
            X[0] ^= t
            X[i] ^= t
        q >>= 1
    for i in range(1, dims):  # Gray encode
        X[i] ^= X[i - 1]
    t = np.zeros(count, dtype=np.int64)
    q = 1 << (bits - 1)
    while q > 1:
        t = np.where((X[dims - 1] & q) != 0, t ^ (q - 1), t)
        q >>= 1
    X ^= t
    key = np.zeros(count, dtype=np.int64)
    for bit in range(bits - 1, -1, -1):  # interleave the transposed bits into one index
        for i in range(dims):
            key = (key << 1) | ((X[i] >> bit) & 1)
    return np.argsort(key, kind="stable")


def plan_chains(features: np.ndarray, length: int, *, sort: bool = True, dims: int = 3) -> list[list[int]]:
    """Split samples ``0 .. N-1`` into chains of at most ``length``, each in solve order.

    Args:
      features: ``(N, F)`` per-sample features.
      length: the longest chain.
      sort: order by features (Hilbert curve of the ``dims`` leading principal components,
        then greedy within each chunk); off: consecutive blocks of indices.
      dims: the embedding's dimension for the space-filling order.
    """
    count = features.shape[0]
    pieces = -(-count // length)  # as few chains as the length allows, of even sizes
    if not sort:
        return [piece.tolist() for piece in np.array_split(np.arange(count), pieces)]
    features = np.asarray(features, dtype=np.float64).reshape(count, -1)
    if pieces == 1:
        return [greedy_chain(features).tolist()]
    curve = hilbert_order(principal_coordinates(features, min(dims, features.shape[1])))
    return [members[greedy_chain(features[members])].tolist() for members in np.array_split(curve, pieces)]
