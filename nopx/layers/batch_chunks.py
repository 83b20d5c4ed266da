"""Run a per-sample model on a batch as independent chunks, so XLA:CPU can overlap them.

XLA:CPU runs each operation of a compiled step on all cores, but many of a neural
operator's operations do not scale to two cores: the 1×1 convolutions' weight gradients
(long contractions over every grid point, on Eigen), the small DFT products, the bias
reductions. Its executor also runs *independent* operations side by side. Splitting the
batch into halves that go through the model separately hands it two independent chains to
interleave, and the cores idle less. Measured on the FNO train steps of
``bench/train_step.py`` (in-process A/B, interleaved, 2026-11-30):

* 2 cores: two chunks 2-8% faster on all five configurations, four chunks 3-11% (mixed:
  better on four, worse on the 1-D one, and a longer compile);
* 16 cores (the H200 machine's CPU): configuration a 1.36x with two chunks, 1.47x with
  four; e 1.29x and 1.56x;
* on the H200 GPU chunks only cost (a: 0.82x with two, e: 0.94x): one large kernel is what
  an accelerator wants.

Only for models whose samples do not interact (no batch statistics): the outputs are the
same, and the parameter gradients are the sums of the chunks' gradients (the same up to the
order of float additions).

>>> import jax.numpy as jnp
>>> x = jnp.arange(10.0).reshape(5, 2)
>>> apply_in_chunks(lambda v: v * 2, x, 2).tolist() == (x * 2).tolist()
True
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp

Chunks = int | Literal["auto"]
#: Up to this many usable CPUs, ``"auto"`` runs two chunks; above, four.
FEW_CPUS = 4


def check_chunks(batch_chunks: Chunks) -> None:
    """Raise ``ValueError`` unless ``batch_chunks`` is ``"auto"`` or a positive int."""
    if batch_chunks != "auto" and (isinstance(batch_chunks, bool)
                                   or not isinstance(batch_chunks, int) or batch_chunks <= 0):
        raise ValueError(f"batch_chunks must be 'auto' or a positive integer, got {batch_chunks!r}")


def _usable_cpus() -> int:
    affinity = getattr(os, "sched_getaffinity", None)      # Linux
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def resolve_chunks(batch_chunks: Chunks, batch: int) -> int:
    """How many chunks a batch of ``batch`` samples is run as.

    ``"auto"``: on a single-device CPU backend two chunks where the process may use up to
    :data:`FEW_CPUS` CPUs, four on more (module docstring); one elsewhere: accelerators want
    large kernels, and on a multi-device mesh the batch axis is sharded, where a split would
    move data between devices. Never more chunks than samples.

    >>> resolve_chunks(4, 3), resolve_chunks(1, 8)
    (3, 1)
    """
    if batch_chunks == "auto":
        if jax.default_backend() != "cpu" or jax.device_count() > 1:
            batch_chunks = 1
        else:
            batch_chunks = 2 if _usable_cpus() <= FEW_CPUS else 4
    return max(1, min(batch_chunks, batch))


def apply_in_chunks(fn: Callable[[jax.Array], jax.Array], x: jax.Array,
                    chunks: int) -> jax.Array:
    """``fn`` on ``chunks`` slices of ``x``'s leading (batch) axis, results concatenated.

    ``x (B, ...) -> (B, ...)``; the slices differ by at most one sample when ``chunks`` does
    not divide ``B``.
    """
    if chunks == 1:
        return fn(x)
    return jnp.concatenate([fn(part) for part in jnp.array_split(x, chunks)], axis=0)
