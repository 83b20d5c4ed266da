"""The FNO benchmark configurations a-e, shared by the nopx side and the neuraloperator driver.

Standard library only: the peer driver imports this inside the peer's virtual environment.
Mode counts follow neuraloperator 2.x: ``n_modes[k]`` frequencies kept in total on axis k,
``n_modes[-1] // 2 + 1`` bins on the real-FFT axis (PERFORMANCE.md §1).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class FNOConfig:
    key: str
    name: str
    in_channels: int
    out_channels: int
    grid: tuple[int, ...]
    n_modes: tuple[int, ...]
    hidden_channels: int
    n_layers: int
    batch: int
    model_kwargs: dict = dataclasses.field(default_factory=dict)


CONFIGS: dict[str, FNOConfig] = {c.key: c for c in (
    FNOConfig("a", "FNO2d Darcy", 1, 1, (64, 64), (16, 16), 32, 4, 16),
    FNOConfig("b", "FNO2d Navier-Stokes (10 steps in -> 1 out)", 10, 1, (64, 64), (12, 12), 32, 4, 16),
    FNOConfig("c", "TFNO2d Darcy (Tucker, rank 0.1)", 1, 1, (64, 64), (16, 16), 32, 4, 16,
              {"factorization": "tucker", "rank": 0.1}),
    FNOConfig("d", "FNO3d space-time (x,y,t)", 10, 1, (64, 64, 16), (8, 8, 8), 20, 4, 4),
    FNOConfig("e", "FNO1d Burgers", 1, 1, (1024,), (16,), 64, 4, 32),
)}
