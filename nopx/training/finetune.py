"""Fine-tuning: start from another run's weights, with learning rates per parameter group.

``init_from: RUN_DIR`` copies every parameter of that run's best checkpoint whose path and
shape match the new model's (a model pretrained on one PDE family, fine-tuned on another);
the others (say, a lifting layer that now sees more input channels) keep their fresh
initialisation and are listed. ``optim.group_lr: {regex: factor}`` multiplies the learning
rate of the parameters whose path matches (the first matching pattern wins; others keep
``optim.lr``), e.g. Poseidon's recipe of a faster embedding and recovery than body.

>>> import jax.numpy as jnp
>>> new = {"lift": {"w": jnp.zeros((3, 4))}, "body": {"w": jnp.zeros(2)}}
>>> old = {"lift": {"w": jnp.ones((2, 4))}, "body": {"w": jnp.ones(2)}}
>>> params, fresh = transfer(new, old)
>>> params["body"]["w"].tolist(), fresh
([1.0, 1.0], ['lift.w'])
>>> lr_multipliers(new, {"^lift": 10.0})
{'body': {'w': 1.0}, 'lift': {'w': 10.0}}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax


def _path(key_path: tuple) -> str:
    return jax.tree_util.keystr(key_path, simple=True, separator=".").removesuffix(".value")


def transfer(params: Any, source: Any) -> tuple[Any, list[str]]:
    """``params`` with each leaf replaced by ``source``'s leaf of the same path and shape.

    Returns the new pytree and the paths that kept their initialisation.
    """
    available = {_path(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(source)}
    fresh: list[str] = []

    def take(path: tuple, leaf: Any) -> Any:
        name = _path(path)
        match = available.get(name)
        if match is None or match.shape != leaf.shape:
            fresh.append(name)
            return leaf
        return match.astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(take, params), fresh


def lr_multipliers(params: Any, groups: Mapping[str, float]) -> Any:
    """A pytree like ``params`` of learning-rate factors: the first pattern of ``groups``
    (regular expressions searched in the dotted parameter path) that matches, else 1."""
    compiled = [(re.compile(pattern), factor) for pattern, factor in groups.items()]

    def factor(path: tuple, _: Any) -> float:
        name = _path(path)
        return next((f for pattern, f in compiled if pattern.search(name)), 1.0)

    return jax.tree_util.tree_map_with_path(factor, params)
