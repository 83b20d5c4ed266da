"""Train-step throughput against device count and batch size, and on a GPU the share of peak.

For each device count ``d``, ``model`` axis size ``m`` and global batch ``b`` this builds the
``(d/m) x m`` mesh of :mod:`nopx.parallel` over the first ``d`` devices and times the real
jitted train step (:class:`nopx.training.steps.Steps`: FNO, relative L2, AdamW, donated
state) on random data, median of ``--steps`` after two warm-up steps.

On CPU, ``--fake-devices N`` splits the host into N XLA devices sharing the same cores: the
table then shows what sharding and the collectives cost, not a speedup. On a GPU the
script also reports how close the chip comes to its peak on the two kernels an FNO lives
on: a matmul (TFLOP/s against the dense tensor-core peak) and a batched 2-D rFFT (bytes
moved per second against the peak memory bandwidth; FFTs are bandwidth-bound).

Usage::

    python bench/scaling.py --fake-devices 8 --devices 1,2,4,8 --batch 8,32   # CPU
    python bench/scaling.py --devices 1 --batch 16,64,256 --grid 128          # a GPU

The last line is the whole report as JSON (for bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from peers.timing import timed_calls

# Dense peak numbers from the vendors' datasheets (SXM parts): FLOP/s, bytes/s.
PEAKS = {
    "H200": {"bf16": 989e12, "f32": 67e12, "tf32": 495e12, "hbm": 4.8e12},
    "H100": {"bf16": 989e12, "f32": 67e12, "tf32": 495e12, "hbm": 3.35e12},
    "A100": {"bf16": 312e12, "f32": 19.5e12, "tf32": 156e12, "hbm": 2.04e12},
}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def _median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` calls after the compiling call and one warm-up."""
    import jax

    return timed_calls(lambda: jax.block_until_ready(run()), 1, repeats)["ms_median"] / 1e3


def train_step_rows(args: argparse.Namespace) -> list[dict]:
    import jax
    import numpy as np
    import optax
    from flax import nnx

    from nopx import losses, models
    from nopx.parallel import StepShardings, device_bytes, make_mesh, place
    from nopx.training.build import sharding_rules
    from nopx.training.data import Normalizer
    from nopx.training.steps import Steps

    model = models.build("fno", in_channels=1, out_channels=1, n_modes=(args.modes,) * 2,
                         hidden_channels=args.hidden, n_layers=args.layers, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adamw(1e-3)
    rows = []
    for devices in args.devices:
        for model_axis in args.model:
            if devices % model_axis or devices > jax.device_count():
                continue
            mesh = make_mesh(devices // model_axis, model_axis)
            shardings = StepShardings.build(mesh, params, tx, sharding_rules("fno"))
            steps = Steps(graphdef, rest, tx, losses.relative_lp, Normalizer.identity(1),
                          Normalizer.identity(1), shardings=shardings)
            for batch in args.batch:
                if batch % (devices // model_axis):
                    continue
                shape = (batch, args.grid, args.grid, 1)
                x, y = (np.random.default_rng(seed).standard_normal(shape, np.float32)
                        for seed in (0, 1))
                x, y = place((x, y), (shardings.batch,) * 2)
                state = list(place((params, tx.init(params)),
                                   (shardings.params, shardings.opt_state)))
                scale = place(np.float32(1), shardings.replicated)

                def step() -> object:
                    state[0], state[1], loss, _ = steps.train_step(state[0], state[1], x, y, scale)
                    return loss

                seconds = _median_seconds(step, args.steps)
                rows.append({"devices": devices, "data": devices // model_axis,
                             "model": model_axis, "batch": batch,
                             "ms_per_step": 1e3 * seconds, "samples_per_s": batch / seconds,
                             "param_mib_per_device": device_bytes(state[0]) / 2**20})
                print(f"{devices:>3} devices ({devices // model_axis} x {model_axis})  batch "
                      f"{batch:>4}  {1e3 * seconds:9.2f} ms/step  {batch / seconds:9.1f} "
                      f"samples/s  {rows[-1]['param_mib_per_device']:.2f} MiB params/device",
                      flush=True)
    return rows


def peak_shares() -> dict:
    """Matmul TFLOP/s and rFFT bandwidth on the first GPU, as shares of its peak."""
    import jax
    import jax.numpy as jnp

    device = jax.devices()[0]
    peaks = next((p for name, p in PEAKS.items() if name in device.device_kind), None)
    report: dict = {"device": device.device_kind}
    n = 8192
    for dtype, peak_key in ((jnp.bfloat16, "bf16"), (jnp.float32, "f32")):
        a = jax.random.normal(jax.random.key(0), (n, n), dtype)
        matmul = jax.jit(lambda u: u @ u)
        flops = 2 * n**3 / _median_seconds(lambda: matmul(a), 10)
        report[f"matmul_{peak_key}_tflops"] = flops / 1e12
        if peaks:
            # f32 matmuls run on tensor cores as TF32 under JAX's default precision.
            peak = peaks["tf32" if peak_key == "f32" else peak_key]
            report[f"matmul_{peak_key}_share"] = flops / peak
    fields = jax.random.normal(jax.random.key(1), (64, 32, 256, 256), jnp.float32)
    rfft = jax.jit(lambda u: jnp.fft.rfft2(u))
    seconds = _median_seconds(lambda: rfft(fields), 10)
    moved = fields.nbytes + fields.size // 256 * 129 * 8  # f32 in, complex64 half-spectrum out
    report["rfft2_gb_per_s"] = moved / seconds / 1e9
    if peaks:
        report["rfft2_share_of_hbm"] = moved / seconds / peaks["hbm"]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake-devices", type=int,
                        help="split the CPU into this many XLA devices (CPU runs only)")
    parser.add_argument("--devices", type=_ints, default=[1, 2, 4, 8],
                        help="device counts to time (default 1,2,4,8; counts over the visible "
                             "devices are skipped)")
    parser.add_argument("--model", type=_ints, default=[1], help="model-axis sizes (default 1)")
    parser.add_argument("--batch", type=_ints, default=[8, 32], help="global batch sizes")
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--modes", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row")
    args = parser.parse_args()

    import jax

    if args.fake_devices:
        jax.config.update("jax_num_cpu_devices", args.fake_devices)
    platform = jax.devices()[0].platform
    print(f"{jax.device_count()} {platform} devices; FNO {args.grid}^2, modes {args.modes}, "
          f"width {args.hidden}, {args.layers} layers", flush=True)
    report = {"platform": platform, "device_kind": jax.devices()[0].device_kind,
              "config": {k: v for k, v in vars(args).items()},
              "train_step": train_step_rows(args)}
    if platform == "gpu":
        report["peak"] = peak_shares()
        print(json.dumps(report["peak"], indent=1))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
