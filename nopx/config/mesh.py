"""The ``mesh`` section: the ``data × model`` device mesh a run is spread over."""

from __future__ import annotations

import dataclasses

from nopx.config.parsing import _require


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """The device mesh ``data × model`` (:mod:`nopx.parallel`); one size may be -1 (the rest).

    The batch is split over ``data`` (``train.batch_size`` must be a multiple of it); the
    parameters and optimizer state are replicated, or, with ``model`` > 1, split over
    ``model`` by the model's own sharding rule (spectral and channel weights by channel,
    attention by head, TFNO factors by rank). Each size must divide the device count; a
    multi-process run uses every device (``data: -1``).
    """

    data: int = 1
    model: int = 1

    def __post_init__(self) -> None:
        _require(self.data == -1 or self.data > 0, "data", "must be -1 (the rest) or positive")
        _require(self.model == -1 or self.model > 0, "model", "must be -1 (the rest) or positive")
        _require(self.data != -1 or self.model != -1, "data",
                 "mesh.data and mesh.model are both -1; give one of them a size")
