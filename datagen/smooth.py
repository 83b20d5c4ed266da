r"""Few-parameter smooth log-coefficients: ``a = exp(Σ_j θ_j ψ_j(x))`` with fixed low-frequency modes.

``ψ_j`` are the products ``Π_d cos(π k_d x_d)`` over the multi-indices ``k ≠ 0`` in order of
``|k|²`` (then lexicographically): in 2-D ``cos(πy), cos(πx), cos(πx)cos(πy), cos(2πy), ...``.
A sample is its ``J`` numbers ``θ ~ U(-amplitude, amplitude)^J``, so samples have near
neighbours in a low-dimensional space: the family where sorting a sequence matters (SKR's
ablation and the reference measurement's ``smooth`` family).

>>> field = SmoothLogField(terms=4, amplitude=1.0)
>>> field.multi_indices()
[(0, 1), (1, 0), (1, 1), (0, 2)]
>>> theta = field.coefficients(np.random.default_rng(0))
>>> field.evaluate(theta, 8).shape, bool(np.all(np.abs(theta) <= 1))
((8, 8), True)
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from nopx.datagen.grid import cell_centres

__all__ = ["SmoothLogField"]


@dataclasses.dataclass(frozen=True)
class SmoothLogField:
    """``log a = Σ_j θ_j ψ_j`` on the cell centres of ``(0, 1)^ndim``; ``θ ~ U(-amplitude, amplitude)^terms``."""

    terms: int = 4
    amplitude: float = 1.0
    ndim: int = 2

    def __post_init__(self) -> None:
        if self.terms < 1:
            raise ValueError(f"terms: need at least 1, got {self.terms}")
        if self.amplitude <= 0:
            raise ValueError(f"amplitude: must be positive, got {self.amplitude}")

    def multi_indices(self) -> list[tuple[int, ...]]:
        """The ``k`` of the first ``terms`` modes."""
        top = int(np.ceil(self.terms ** (1 / self.ndim))) + 1
        candidates = [k for k in itertools.product(range(top + 1), repeat=self.ndim) if any(k)]
        return sorted(candidates, key=lambda k: (sum(i * i for i in k), k))[: self.terms]

    def coefficients(self, rng: np.random.Generator) -> np.ndarray:
        """``θ`` ``(terms,)`` drawn from ``rng``."""
        return rng.uniform(-self.amplitude, self.amplitude, self.terms)

    def evaluate(self, theta: np.ndarray, n: int) -> np.ndarray:
        """``log a`` at the cell centres of an ``n^ndim`` grid, shape ``(n,) * ndim``."""
        centres = cell_centres(n)
        log_a = np.zeros((n,) * self.ndim)
        for weight, k in zip(theta, self.multi_indices(), strict=True):
            mode = np.ones(())
            for axis_k in k:
                mode = np.multiply.outer(mode, np.cos(np.pi * axis_k * centres))
            log_a += weight * mode
        return log_a
