"""Multi-process runs on JAX's own distributed runtime (no process manager of our own).

``nopx train --distributed`` calls :func:`jax.distributed.initialize` before JAX starts,
so the run sees the devices of every process as one mesh (:mod:`nopx.parallel`). Where a
launcher already describes the job it is detected and initialised without the flag:

- Slurm: ``srun`` with more than one task (``SLURM_NTASKS`` > 1); JAX reads the
  coordinator, process count and id from Slurm's variables;
- Cloud TPU VMs: a slice of several hosts (``TPU_WORKER_HOSTNAMES`` lists more than one);
  JAX reads the rest from the TPU metadata.

Elsewhere (a few hosts or local processes) start one ``nopx train --distributed`` per
process with ``JAX_COORDINATOR_ADDRESS=host:port`` (process 0's address, read by JAX),
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (read here). On CPU, processes exchange
data through gloo (JAX's default CPU collectives).

Host data that the processes work out in shares (the normaliser statistics,
:mod:`nopx.training.data`) is combined with :func:`gather_blocks`; :class:`Process` says
which share is this process's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from nopx.errors import UserError


class Process(NamedTuple):
    """This process's place in a run: process ``index`` of ``count`` (``0`` of ``1`` alone)."""

    index: int = 0
    count: int = 1

    @classmethod
    def current(cls) -> Process:
        """This process in JAX's runtime (after :func:`initialize`, if it is called at all)."""
        import jax

        return cls(jax.process_index(), jax.process_count())


def gather_blocks(block: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """Every process's ``block``, concatenated in process order: the same array on each.

    Process ``p`` passes ``(sizes[p], ...)`` rows (every process passes the same ``sizes``);
    the result is ``(sum(sizes), ...)``. The bytes travel, not the values, so float64 arrives
    bit for bit (JAX without x64 would round it to float32). Alone: ``block`` itself.
    """
    import jax

    if jax.process_count() == 1:
        return block
    from jax.experimental import multihost_utils

    # Collectives need one shape everywhere: pad to the largest block, cut after.
    padded = np.zeros((max(sizes), *block.shape[1:]), block.dtype)
    padded[:len(block)] = block
    whole = multihost_utils.process_allgather(padded.view(np.uint8)).view(block.dtype)
    return np.concatenate([rows[:size] for rows, size in zip(whole, sizes, strict=True)])


def detect(env: Mapping[str, str] = os.environ) -> str | None:
    """The launcher that started this process as one of several: ``"slurm"``, ``"tpu"``, or
    ``None``.

    >>> detect({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_PROCID": "1"})
    'slurm'
    >>> detect({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}) is None
    True
    """
    if "SLURM_JOB_ID" in env and "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return "slurm"
    hosts = env.get("TPU_WORKER_HOSTNAMES", "")
    if len([h for h in hosts.split(",") if h]) > 1:
        return "tpu"
    return None


def initialize(requested: bool, env: Mapping[str, str] = os.environ) -> bool:
    """Join the distributed run if ``requested`` or a launcher is detected; return whether
    this process is part of one. Call before anything touches a JAX device."""
    import jax

    if not requested and detect(env) is None:
        return False
    if jax.distributed.is_initialized():
        return True
    count, index = env.get("JAX_NUM_PROCESSES"), env.get("JAX_PROCESS_ID")
    try:
        jax.distributed.initialize(num_processes=None if count is None else int(count),
                                   process_id=None if index is None else int(index))
    except (ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"--distributed: JAX's distributed runtime did not start ({first}). "
                        "Under Slurm or on a TPU VM slice it configures itself; elsewhere set "
                        "JAX_COORDINATOR_ADDRESS=host:port (process 0), JAX_NUM_PROCESSES and "
                        "JAX_PROCESS_ID in each process's environment") from None
    return True
