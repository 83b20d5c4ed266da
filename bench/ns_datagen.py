#!/usr/bin/env python3
"""Navier–Stokes datagen throughput: nopx vs the FNO reference scheme in numpy vs exponax.

One process measures, interleaved round by round on the same batch of GRF initial
vorticities (FNO recipe, wavenumbers up to ``min(32, n/4)``: well inside the 2/3 cutoff,
where FNO's Jacobian form of ``u·∇w``, nopx's Basdevant form and exponax's dealiasing
agree), the same grid, ``dt`` and dtype, ``ν = 1e-3`` and FNO's forcing
``0.1 (sin 2π(x+y) + cos 2π(x+y))``:

* ``nopx cn_euler``: :func:`nopx.datagen.navier_stokes.simulate`, the FNO scheme
  (Crank–Nicolson viscosity, explicit Euler advection + forcing), one nonlinear evaluation
  per step; ``nopx cn_ab2`` (second order, one evaluation) and ``nopx cn_heun`` (second
  order, two evaluations).
* ``numpy FNO``: FNO's ``ns_2d.py`` step written plainly in numpy (``rfft2``, four inverse
  and one forward FFT per step, batched over the trajectories; numpy's FFT is
  single-threaded, XLA uses both cores).
* ``exponax ETDRK2`` (if importable): ``exponax.stepper.NavierStokesVorticity`` (order 2,
  two nonlinear evaluations per step, 2/3 dealiasing) with the forcing added inside its
  nonlinear function (exact for a constant forcing) and ``vorticity_convection_scale=-1``,
  which turns exponax's ``Δψ = w`` convention into FNO's ``−Δψ = w`` (same PDE, so the
  final states can be compared). Two paths: ``fourier`` (``lax.scan`` over
  ``step_fourier``, no transforms between steps) and ``physical`` (``exponax.repeat``,
  the library's documented rollout).

Each timed call advances the batch ``--steps64`` (64²) or ``--steps256`` (256²) steps;
the median over ``--reps`` rounds is reported (compilation excluded). "traj/min (T=50)"
is ``60 · batch / (50 / dt · seconds per step)``: trajectories to FNO's horizon per wall
minute. The last column compares each method's final state with ``nopx cn_heun``
(max |Δw| / max |w|): the schemes differ by their time-discretisation errors only.

exponax lives in a throw-away virtual environment beside nopx (same jax)::

    python3 -m venv /tmp/peer-venv-exponax
    /tmp/peer-venv-exponax/bin/pip install "jax[cpu]==0.10.2" exponax scipy h5py pyyaml rich
    /tmp/peer-venv-exponax/bin/pip install --no-deps -e .
    /tmp/peer-venv-exponax/bin/python bench/ns_datagen.py [--grids 64,256] [--dtypes float32,float64]

Without exponax (``/work/venv/bin/python bench/ns_datagen.py``) it compares nopx with numpy.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from nopx.datagen.navier_stokes import SCHEMES, compile_program, forcing_field, simulate
from nopx.datagen.periodic_grf import PeriodicGRF

NU = 1e-3
DT = {64: 1e-3, 128: 5e-4, 256: 1e-4}


def numpy_fno(w0: np.ndarray, f: np.ndarray, dt: float, steps: int) -> np.ndarray:
    """FNO's ``ns_2d.py`` scheme in numpy: w0 ``(B, n, n)`` → w after ``steps`` steps."""
    n = w0.shape[-1]
    k_max = n // 2
    ky = np.fft.rfftfreq(n, 1.0 / n)[None, :]
    kx = np.fft.fftfreq(n, 1.0 / n)[:, None]
    lap = 4 * np.pi**2 * (kx**2 + ky**2)
    lap[0, 0] = 1.0
    dealias = (np.abs(kx) <= 2 / 3 * k_max) & (np.abs(ky) <= 2 / 3 * k_max)
    w_h = np.fft.rfft2(w0)
    f_h = np.fft.rfft2(f)
    for _ in range(steps):
        psi_h = w_h / lap
        u = np.fft.irfft2(2j * np.pi * ky * psi_h, s=(n, n))
        v = np.fft.irfft2(-2j * np.pi * kx * psi_h, s=(n, n))
        w_x = np.fft.irfft2(2j * np.pi * kx * w_h, s=(n, n))
        w_y = np.fft.irfft2(2j * np.pi * ky * w_h, s=(n, n))
        adv_h = dealias * np.fft.rfft2(u * w_x + v * w_y)
        w_h = (-dt * adv_h + dt * f_h + (1.0 - 0.5 * dt * NU * lap) * w_h) / (1.0 + 0.5 * dt * NU * lap)
    return np.fft.irfft2(w_h, s=(n, n))


def exponax_runners(w0: np.ndarray, f: np.ndarray, dt: float, steps: int, dtype: str) -> dict[str, Callable]:
    """The exponax ETDRK2 rollouts (call inside the dtype's x64 scope); empty without exponax."""
    try:
        import exponax as ex
    except ImportError:
        return {}
    import jax
    import jax.numpy as jnp

    n = w0.shape[-1]
    f_hat = ex.fft(jnp.asarray(f[None], dtype=dtype), num_spatial_dims=2)

    class Forced(ex.nonlin_fun.VorticityConvection2d):
        forcing_hat: jax.Array

        def __init__(self, forcing_hat, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.forcing_hat = forcing_hat

        def __call__(self, u_hat):
            return super().__call__(u_hat) + self.forcing_hat

    class ForcedNS(ex.stepper.NavierStokesVorticity):
        def _build_nonlinear_fun(self, derivative_operator):
            return Forced(f_hat, self.num_spatial_dims, self.num_points,
                          convection_scale=self.vorticity_convection_scale,
                          derivative_operator=derivative_operator, dealiasing_fraction=self.dealiasing_fraction)

    stepper = ForcedNS(2, 1.0, n, dt, diffusivity=NU, order=2, vorticity_convection_scale=-1.0)
    u0 = jnp.asarray(w0[:, None], dtype=dtype)

    def fourier(u_hat):
        return jax.lax.scan(lambda c, _: (stepper.step_fourier(c), None), u_hat, None, length=steps)[0]

    physical = jax.jit(jax.vmap(ex.repeat(stepper, steps)))
    fourier_path = jax.jit(lambda u: jax.vmap(
        lambda v: ex.ifft(fourier(ex.fft(v, num_spatial_dims=2)), num_spatial_dims=2, num_points=n))(u))
    jax.block_until_ready((physical(u0), fourier_path(u0)))  # compile
    return {"exponax ETDRK2 fourier": lambda: np.asarray(fourier_path(u0))[:, 0],
            "exponax ETDRK2 physical": lambda: np.asarray(physical(u0))[:, 0]}


def measure(n: int, dtype: str, batch: int, steps: int, reps: int) -> list[dict]:
    import jax

    dt = DT[n]
    # Band-limited inside the 2/3 cutoff, so that every method solves the same discrete problem.
    grf = PeriodicGRF(modes=min(32, n // 4))
    w0 = np.stack([grf.sample(0, i, n) for i in range(batch)]).astype(dtype)
    f = forcing_field("fno", n).astype(dtype)
    runners: dict[str, Callable[[], np.ndarray]] = {}
    evaluations = {}
    for scheme in ("cn_euler", "cn_ab2", "cn_heun"):
        settings = dict(nu=NU, dt=dt, steps_per_record=steps, records=1, scheme=scheme, dtype=dtype)
        compile_program(batch, n, **settings)
        runners[f"nopx {scheme}"] = lambda s=settings: simulate(w0, forcing=f, **s)[:, -1]
        evaluations[f"nopx {scheme}"] = SCHEMES[scheme]
    runners["numpy FNO (cn_euler)"] = lambda: numpy_fno(w0, f, dt, steps)
    evaluations["numpy FNO (cn_euler)"] = 1
    with jax.enable_x64(dtype == "float64"):
        peers = exponax_runners(w0, f, dt, steps, dtype)
    runners.update(peers)
    evaluations.update({name: 2 for name in peers})

    times: dict[str, list[float]] = {name: [] for name in runners}
    finals: dict[str, np.ndarray] = {}
    for _ in range(reps):
        for name, run in runners.items():
            with jax.enable_x64(dtype == "float64"):
                started = time.perf_counter()
                finals[name] = run()
                times[name].append(time.perf_counter() - started)
    reference = finals["nopx cn_heun"]
    rows = []
    for name in runners:
        per_step = statistics.median(times[name]) / steps
        rows.append({
            "grid": n, "dt": dt, "dtype": dtype, "method": name, "evals": evaluations[name],
            "ms_per_step": 1e3 * per_step,
            "traj_per_min": 60 * batch / (50 / dt * per_step),
            "diff": float(np.abs(finals[name] - reference).max() / np.abs(reference).max()),
            "finite": bool(np.isfinite(finals[name]).all()),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", default="64,256")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps64", type=int, default=200, help="steps per timed call at 64²")
    parser.add_argument("--steps256", type=int, default=10, help="steps per timed call at 256²")
    args = parser.parse_args(argv)

    import jax

    rows = []
    for n in (int(g) for g in args.grids.split(",")):
        for dtype in args.dtypes.split(","):
            steps = args.steps64 if n <= 64 else args.steps256
            print(f"[{n}² {dtype}, {steps} steps x {args.reps} rounds] ...", flush=True)
            rows += measure(n, dtype, args.batch, steps, args.reps)

    try:
        from importlib.metadata import version
        exponax_version = version("exponax")
    except Exception:
        exponax_version = "not installed"
    print(f"\n{datetime.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jax {jax.__version__}, numpy {np.__version__}, exponax {exponax_version}; batch {args.batch}, "
          f"nu {NU}, median of {args.reps}\n")
    print("| grid | dt | dtype | method | evals/step | ms per batch-step | traj/min (T=50) "
          "| vs exponax fourier | max Δw vs cn_heun |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        peer = next((r for r in rows if r["method"] == "exponax ETDRK2 fourier" and r["grid"] == row["grid"]
                     and r["dtype"] == row["dtype"]), None)
        ratio = f"{peer['ms_per_step'] / row['ms_per_step']:.2f}x" if peer else "n/a"
        finite = "" if row["finite"] else " (NOT FINITE)"
        print(f"| {row['grid']}² | {row['dt']:g} | {row['dtype']} | {row['method']} | {row['evals']} "
              f"| {row['ms_per_step']:.3f} | {row['traj_per_min']:.3g} | {ratio} | {row['diff']:.1e}{finite} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
