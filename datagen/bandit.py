r"""Bandits that tune a solver knob across a sequence from the cost each choice incurred.

Khodak et al., "Learning to Relax" (ICLR 2024): pick SOR's ``ω`` for each system of a
sequence from a grid, observe only the iterations it took, and the total approaches that
of the best fixed ``ω`` in hindsight. :class:`TsallisINF` (Zimmert and Seldin 2021, the
1/2-Tsallis entropy; the paper's choice) and :class:`Exp3` (Auer et al. 2002) play arms
with losses in ``[0, 1]`` (iterations over a cap); :class:`ContextualBandit` keeps one
bandit per bin of a known scalar context, e.g. the diagonal shift ``c`` of ``A + cI``
(a piecewise-constant stand-in for the paper's Chebyshev-regression ChebCB).

>>> bandit = TsallisINF(arms=3, seed=0)
>>> for _ in range(300):
...     arm = bandit.choose()
...     bandit.update(arm, [0.9, 0.2, 0.6][arm])
>>> int(np.argmax(bandit.probabilities()))
1
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["TsallisINF", "Exp3", "ContextualBandit"]


class TsallisINF:
    """Tsallis-INF with importance-weighted loss estimates; ``η_t = 2/√t``."""

    def __init__(self, arms: int, seed: int = 0) -> None:
        self.losses = np.zeros(arms)
        self.rounds = 0
        self.rng = np.random.default_rng(seed)
        self._p = np.full(arms, 1.0 / arms)

    def probabilities(self) -> np.ndarray:
        """The play distribution ``p_i = 4 (η (L̂_i - x))^{-2}``, ``x`` normalising it (Newton's method)."""
        eta = 2.0 / np.sqrt(self.rounds + 1)
        x = self.losses.min() - 2.0 / eta  # every L̂_i - x ≥ 2/η: p_i ≤ 1
        for _ in range(50):
            p = 4.0 / (eta * (self.losses - x)) ** 2
            step = (p.sum() - 1.0) / (eta * (p**1.5).sum())
            x -= step
            if abs(step) < 1e-12:
                break
        p = 4.0 / (eta * (self.losses - x)) ** 2
        return p / p.sum()

    def choose(self) -> int:
        self._p = self.probabilities()
        return int(self.rng.choice(self._p.size, p=self._p))

    def update(self, arm: int, loss: float) -> None:
        """Record ``loss`` in ``[0, 1]`` for the arm just played."""
        self.losses[arm] += float(np.clip(loss, 0, 1)) / self._p[arm]
        self.rounds += 1


class Exp3:
    """Exp3 with exploration ``γ`` and learning rate ``eta`` (default ``γ / arms``)."""

    def __init__(self, arms: int, seed: int = 0, gamma: float = 0.1, eta: float | None = None) -> None:
        self.gamma = gamma
        self.eta = gamma / arms if eta is None else eta
        self.log_weights = np.zeros(arms)
        self.rng = np.random.default_rng(seed)
        self._p = np.full(arms, 1.0 / arms)

    def probabilities(self) -> np.ndarray:
        weights = np.exp(self.log_weights - self.log_weights.max())
        return (1 - self.gamma) * weights / weights.sum() + self.gamma / weights.size

    def choose(self) -> int:
        self._p = self.probabilities()
        return int(self.rng.choice(self._p.size, p=self._p))

    def update(self, arm: int, loss: float) -> None:
        reward = 1.0 - float(np.clip(loss, 0, 1))
        self.log_weights[arm] += self.eta * reward / self._p[arm]


class ContextualBandit:
    """One bandit per bin of a scalar context in ``[low, high]``: ``choose(c)``, then ``update(arm, loss)``."""

    def __init__(self, make: Callable[[int], TsallisINF | Exp3], low: float, high: float, bins: int = 8) -> None:
        self.edges = np.linspace(low, high, bins + 1)[1:-1]
        self.bandits = [make(b) for b in range(bins)]
        self._last = 0

    def choose(self, context: float) -> int:
        self._last = int(np.searchsorted(self.edges, context))
        return self.bandits[self._last].choose()

    def update(self, arm: int, loss: float) -> None:
        self.bandits[self._last].update(arm, loss)
