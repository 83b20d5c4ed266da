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
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from nopx.errors import UserError


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
