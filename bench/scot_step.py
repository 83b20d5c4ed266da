"""scOT forward and forward+backward time and peak memory at Poseidon's resolution (128²).

Builds a Poseidon-size :class:`~nopx.models.ScOT` (``--size T|B|L``, Poseidon's 4 input and
output channels of its compressible-Euler tasks by default), times the jitted forward
``model(x, t)`` and the jitted gradient of a mean-squared loss with respect to all
parameters on random data, median of ``--steps`` after one warm-up call, and reports the
process's peak resident memory (CPU) or the device's peak bytes in use (GPU).

Usage::

    python bench/scot_step.py --size T --batch 1,4
    python bench/scot_step.py --size B --batch 16          # a GPU

The last line is the report as JSON (for bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import resource

import jax
import jax.numpy as jnp
from flax import nnx

from nopx.models import ScOT
from peers.timing import timed_calls


def _peak_bytes() -> int:
    """Peak device bytes in use on an accelerator, else the process's peak RSS."""
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="T", choices=("T", "B", "L"))
    parser.add_argument("--grid", type=int, default=128)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--batch", default="1,4", help="comma-separated batch sizes")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    model = ScOT(args.channels, args.channels, size=args.size, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    n_params = sum(p.size for p in jax.tree.leaves(params))

    @jax.jit
    def forward(params, x, t):
        return nnx.merge(graphdef, params)(x, t)

    @jax.jit
    def gradient(params, x, t):
        return jax.grad(lambda p: jnp.mean(forward(p, x, t) ** 2))(params)

    rows = []
    for batch in (int(b) for b in args.batch.split(",")):
        x = jax.random.normal(jax.random.key(0), (batch, args.grid, args.grid, args.channels))
        t = jnp.linspace(0.0, 1.0, batch)
        row = {"batch": batch,
               "forward_ms": timed_calls(lambda: jax.block_until_ready(forward(params, x, t)),
                                         0, args.steps)["ms_median"],
               "forward_backward_ms": timed_calls(
                   lambda: jax.block_until_ready(gradient(params, x, t)), 0,
                   args.steps)["ms_median"],
               "peak_mib": _peak_bytes() / 2**20}
        rows.append(row)
        print(f"scOT-{args.size} {args.grid}² batch {batch}: forward {row['forward_ms']:.1f} ms, "
              f"forward+backward {row['forward_backward_ms']:.1f} ms, peak {row['peak_mib']:.0f} MiB")
    print(json.dumps({"size": args.size, "parameters": n_params, "grid": args.grid,
                      "device": str(jax.devices()[0].device_kind), "rows": rows}))


if __name__ == "__main__":
    main()
