#!/usr/bin/env python3
"""nopx vs neuraloperator 2.0.0: FNO training step and forward pass, side by side.

For every configuration of the peer script ``peer_neuralop_bench.py`` (a-e) this
runs, one after the other in the same invocation:

* the peer: neuraloperator 2.0.0 on torch 2.13.0 (CPU), driven through the peer
  script's own command line inside a separate virtual environment
  (``bench/.peer-venv``, git-ignored, created on first use);
* nopx: ``nopx.models.FNO`` with neuraloperator's defaults, in a child process of
  this interpreter.

Peer and nopx alternate per configuration (a: peer then nopx, b: nopx then peer,
...), so a burst of foreign load hits both sides of one ratio rather than one
side of every ratio. Only one benchmark process runs at any time.

Usage (from the repository root)::

    /work/venv/bin/python bench/train_step.py                   # all configs -> bench/RESULTS.md
    /work/venv/bin/python bench/train_step.py --configs a,e --iters 3 --no-write   # smoke test
    /work/venv/bin/python bench/train_step.py --no-peer --configs a               # nopx only

What is timed (the peer script's conventions, kept identical here):

* float32, synthetic standard-normal inputs and targets, fixed seed.
* Train step = forward + relative L2 loss + backward + Adam(lr=1e-3) update.
  nopx: ``nnx.split(model, nnx.Param, ...)``, one ``jax.jit`` around
  ``jax.value_and_grad`` and the ``optax.adam(1e-3)`` update with the parameters
  and optimiser state donated; ``jax.block_until_ready`` on every step. The loss
  is ``nopx.losses.relative_lp(pred, target) * batch`` (batch mean times batch =
  neuralop's batch sum; a constant factor, it changes no timing).
* Forward = ``jax.jit`` of the model apply (peer: ``eval()`` under
  ``torch.inference_mode()``).
* ``--warmup`` untimed calls (default 3), median of ``--iters`` timed calls
  (default 10), ``time.perf_counter`` per call. On the nopx side the first call,
  which traces and compiles, is timed apart (``compile s``) and comes before the
  warm-ups.
* Forward first, then training, in one process per configuration and library:
  peak RSS is ``ru_maxrss`` of that process after each phase.
* Threads: this driver pins itself, and so every child, to ``--threads`` CPUs
  with ``sched_setaffinity`` (what ``taskset`` does). XLA:CPU sizes its
  intra-op pool from the affinity mask; torch additionally gets
  ``set_num_threads(--threads)`` from the peer script.
* Contention: before each child the driver waits (up to ``--quiet-wait`` s) for
  other processes to use at most ``--max-other-cpu`` of the machine, measures
  the share they used while the child ran, and re-runs a contended child up to
  ``--attempts`` times, keeping the least contended result.

Speed ratio = peer ms / nopx ms (above 1: nopx is faster). Configuration c is a
Tucker TFNO; until ``nopx.models.TFNO`` exists the nopx side reports it as not
available and only the peer runs.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_PEER_SCRIPT = REPO.parent / "shared" / "bench" / "peer_neuralop_bench.py"
DEFAULT_PEER_VENV = HERE / ".peer-venv"
DEFAULT_RESULTS = HERE / "RESULTS.md"
PEER_TORCH = "2.13.0"
PEER_NEURALOP = "2.0.0"
TFNO_MISSING = "not yet (TFNO is issue 5)"
# glibc malloc settings for --malloc tuned: one arena, no mmap'ed chunks, no trimming, so a
# freed block goes back to the heap and is reused with its pages still mapped.
TUNED_MALLOC_ENV = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0",
                    "MALLOC_TRIM_THRESHOLD_": str(2**36)}


def _marks(malloc: str) -> tuple[str, str]:
    tag = f"bench/train_step.py malloc={malloc}"
    return (f"<!-- BEGIN {tag} (generated; edit outside the markers) -->",
            f"<!-- END {tag} -->")


def load_peer_module(path: Path):
    """Import the peer script by path (it imports torch only inside functions)."""
    spec = importlib.util.spec_from_file_location("peer_neuralop_bench", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import the peer script {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- #
# Worker: one nopx configuration, one JSON line on stdout.
# --------------------------------------------------------------------------- #

def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _timed_calls(fn, warmup: int, iters: int) -> dict:
    """First call (compiles) timed apart, then ``warmup`` untimed, then ``iters`` timed.

    Also returns the kernel CPU time and minor page faults per timed call: fresh memory
    mapped on every step shows up there.
    """
    t0 = time.perf_counter()
    fn()
    first_s = time.perf_counter() - t0
    for _ in range(warmup):
        fn()
    times = []
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"first_s": first_s, "ms": times,
            "sys_ms": (ru1.ru_stime - ru0.ru_stime) / iters * 1e3,
            "minor_faults": (ru1.ru_minflt - ru0.ru_minflt) / iters}


def build_nopx_model(cfg, seed: int):
    """The nopx model for a peer config, or a string saying why there is none."""
    from flax import nnx

    import nopx.models as models

    kwargs = dict(cfg.model_kwargs)
    if "factorization" in kwargs and not hasattr(models, "TFNO"):
        return TFNO_MISSING
    cls = models.TFNO if "factorization" in kwargs else models.FNO
    return cls(cfg.in_channels, cfg.out_channels, tuple(cfg.n_modes), cfg.hidden_channels,
               n_layers=cfg.n_layers, **kwargs, rngs=nnx.Rngs(seed))


def run_worker(cfg, args: argparse.Namespace) -> dict:
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    rss_after_import = _peak_rss_mib()
    base = {"key": cfg.key, "name": cfg.name}
    model = build_nopx_model(cfg, args.seed)
    if isinstance(model, str):
        return {**base, "unavailable": model}
    from nopx.losses import relative_lp

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    del model
    n_params = sum(int(p.size) for p in jax.tree.leaves(params))

    kx, ky = jax.random.split(jax.random.key(args.seed))
    x = jax.random.normal(kx, (cfg.batch, *cfg.grid, cfg.in_channels), jnp.float32)
    y = jax.random.normal(ky, (cfg.batch, *cfg.grid, cfg.out_channels), jnp.float32)

    tx = optax.adam(1e-3)
    opt_state = tx.init(params)

    @jax.jit
    def forward(params, rest, x):
        return nnx.merge(graphdef, params, rest)(x)

    def loss_fn(params, rest, x, y):
        pred = nnx.merge(graphdef, params, rest)(x)
        return relative_lp(pred, y) * x.shape[0]  # batch mean -> neuralop's batch sum

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, rest, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, rest, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rss_after_setup = _peak_rss_mib()

    fwd = _timed_calls(lambda: jax.block_until_ready(forward(params, rest, x)),
                       args.warmup, args.iters)
    rss_after_forward = _peak_rss_mib()

    state = {"params": params, "opt": opt_state, "losses": []}
    del params, opt_state  # donated from here on: only ``state`` may hold them

    def one_step():
        p, s, loss = train_step(state["params"], state["opt"], rest, x, y)
        jax.block_until_ready((p, s, loss))
        state["params"], state["opt"] = p, s
        state["losses"].append(float(loss))

    train = _timed_calls(one_step, args.warmup, args.iters)
    rss_after_train = _peak_rss_mib()

    train_ms, fwd_ms = train["ms"], fwd["ms"]
    train_med, fwd_med = statistics.median(train_ms), statistics.median(fwd_ms)
    return {
        **base,
        "params_real": n_params,
        "train_ms_median": train_med,
        "train_ms_min": min(train_ms),
        "train_ms_all": train_ms,
        "train_first_call_s": train["first_s"],
        "train_samples_per_s": cfg.batch / (train_med / 1e3),
        "forward_ms_median": fwd_med,
        "forward_ms_min": min(fwd_ms),
        "forward_ms_all": fwd_ms,
        "forward_first_call_s": fwd["first_s"],
        "forward_samples_per_s": cfg.batch / (fwd_med / 1e3),
        "loss_first_last": [state["losses"][0], state["losses"][-1]],
        "train_sys_ms_per_step": train["sys_ms"],
        "train_minor_faults_per_step": train["minor_faults"],
        "forward_sys_ms_per_call": fwd["sys_ms"],
        "forward_minor_faults_per_call": fwd["minor_faults"],
        "jax_devices": [str(d) for d in jax.devices()],
        "rss_mib": {
            "after_import": rss_after_import,
            "after_setup": rss_after_setup,
            "peak_forward": rss_after_forward,
            "peak_train": rss_after_train,
        },
    }


# --------------------------------------------------------------------------- #
# Peer environment: bench/.peer-venv with torch 2.13.0 CPU + neuraloperator 2.0.0.
# --------------------------------------------------------------------------- #

_PEER_PROBE = ("import json, torch, neuralop; print(json.dumps({'torch': torch.__version__, "
               "'neuralop': getattr(neuralop, '__version__', 'unknown')}))")


def _peer_versions(python: Path) -> dict | None:
    if not python.exists():
        return None
    proc = subprocess.run([str(python), "-c", _PEER_PROBE], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _peer_ok(versions: dict | None) -> bool:
    return bool(versions) and versions["torch"].split("+")[0] == PEER_TORCH \
        and versions["neuralop"] == PEER_NEURALOP


def ensure_peer_venv(venv: Path) -> tuple[Path, dict]:
    """Return the peer venv's python and its versions, creating the venv if needed.

    torch goes in first and pinned: ``torch==2.13.0`` resolves to the local CPU
    wheel, anything else downloads a multi-GB CUDA build. neuraloperator then
    installs under a constraint that keeps that torch.
    """
    python = venv / "bin" / "python"
    versions = _peer_versions(python)
    if _peer_ok(versions):
        return python, versions
    print(f"[peer] creating {venv} (torch=={PEER_TORCH} CPU, neuraloperator=={PEER_NEURALOP})",
          file=sys.stderr, flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-qq"]  # -qq: errors only
    subprocess.run([*pip, f"torch=={PEER_TORCH}"], check=True)
    constraints = venv / "constraints.txt"
    constraints.write_text(f"torch=={PEER_TORCH}\n")
    subprocess.run([*pip, "-c", str(constraints), f"neuraloperator=={PEER_NEURALOP}"], check=True)
    versions = _peer_versions(python)
    if not _peer_ok(versions):
        raise SystemExit(f"{venv}: expected torch {PEER_TORCH} and neuraloperator "
                         f"{PEER_NEURALOP}, found {versions}; delete the folder and rerun")
    return python, versions


# --------------------------------------------------------------------------- #
# Driver: contention accounting, one child per (config, library), report.
# --------------------------------------------------------------------------- #

def _machine_busy_s() -> float | None:
    """Busy CPU seconds of the whole machine so far (all CPUs, from /proc/stat)."""
    try:
        with open("/proc/stat") as fh:
            ticks = [int(v) for v in fh.readline().split()[1:8]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wait_for_quiet(max_wait_s: float, max_share: float, window_s: float = 2.0) -> float | None:
    """Sleep until other processes use at most ``max_share`` of the machine over
    ``window_s``, or ``max_wait_s`` has passed; return the last measured share."""
    if max_wait_s <= 0:
        return None
    deadline = time.monotonic() + max_wait_s
    while True:
        b0 = _machine_busy_s()
        time.sleep(window_s)
        b1 = _machine_busy_s()
        if b0 is None or b1 is None:
            return None
        share = (b1 - b0) / (window_s * (os.cpu_count() or 1))
        if share <= max_share or time.monotonic() >= deadline:
            return share


def run_child(argv: list[str], env: dict | None = None) -> tuple[subprocess.CompletedProcess,
                                                                  float | None]:
    """Run one child; return it and the machine share that OTHER processes used."""
    busy0, own0, t0 = _machine_busy_s(), _children_cpu_s(), time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})})
    busy1, own1, t1 = _machine_busy_s(), _children_cpu_s(), time.perf_counter()
    share = None
    if busy0 is not None and busy1 is not None:
        foreign = max(0.0, (busy1 - busy0) - (own1 - own0))
        share = foreign / ((t1 - t0) * (os.cpu_count() or 1))
    return proc, share


def _error(key: str, name: str, proc: subprocess.CompletedProcess) -> dict:
    print(proc.stderr, file=sys.stderr)
    tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
    return {"key": key, "name": name, "error": tail[0]}


def measure_nopx(key: str, name: str, args: argparse.Namespace) -> dict:
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", key,
            "--iters", str(args.iters), "--warmup", str(args.warmup), "--seed", str(args.seed),
            "--peer-script", str(args.peer_script)]
    proc, share = run_child(argv, args.child_env)
    if proc.returncode != 0:
        return _error(key, name, proc)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["foreign_cpu_share"] = share
    return result


def measure_peer(key: str, name: str, args: argparse.Namespace, python: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="nopx-bench-") as tmp:
        out = Path(tmp) / "peer.json"
        argv = [str(python), str(args.peer_script), "--configs", key, "--json", str(out),
                "--iters", str(args.iters), "--warmup", str(args.warmup),
                "--threads", str(args.threads), "--seed", str(args.seed),
                "--attempts", "1", "--quiet-wait", "0"]
        proc, share = run_child(argv, args.child_env)
        if proc.returncode != 0 or not out.exists():
            return _error(key, name, proc)
        report = json.loads(out.read_text())
    result = report["results"][0]
    if "error" in result:
        return result
    # The peer measures foreign load around its own worker (not its driver's
    # torch import afterwards), the same window as ours around the nopx worker.
    if result.get("foreign_cpu_share") is None:
        result["foreign_cpu_share"] = share
    result["environment"] = report.get("environment", {})
    return result


def measure(side: str, key: str, name: str, args: argparse.Namespace, peer_python) -> dict:
    best = None
    for attempt in range(1, args.attempts + 1):
        quiet = wait_for_quiet(args.quiet_wait, args.max_other_cpu)
        result = (measure_peer(key, name, args, peer_python) if side == "peer"
                  else measure_nopx(key, name, args))
        result["attempt"], result["quiet_share_before"] = attempt, quiet
        result["measured_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if "error" in result or "unavailable" in result:
            print(f"[{key}] {side}: {result.get('error') or result.get('unavailable')}",
                  file=sys.stderr, flush=True)
            return result
        share = result.get("foreign_cpu_share")
        print(f"[{key}] {side} attempt {attempt}: train {result['train_ms_median']:.1f} ms, "
              f"forward {result['forward_ms_median']:.1f} ms, other CPU "
              f"{'n/a' if share is None else f'{share:.0%}'}", file=sys.stderr, flush=True)
        if best is None or (share or 0.0) < (best.get("foreign_cpu_share") or 0.0):
            best = result
        if share is None or share <= args.max_other_cpu:
            break
    return best


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("nopx", "jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"],
                           capture_output=True, text=True)
    out["nopx_commit"] = (git.stdout.strip() or "no commit yet") + \
        (" + uncommitted changes" if dirty.stdout.strip() else "")
    return out


def _machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu_model": cpu, "cpu_count": os.cpu_count(), "memory_gib": round(mem_gib, 1),
            "platform": platform.platform()}


def _pin_threads(n: int) -> list[int]:
    cpus = sorted(os.sched_getaffinity(0))[:n]
    os.sched_setaffinity(0, cpus)
    return cpus


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #

def _fmt(v, spec: str = ".1f") -> str:
    return "—" if v is None else format(v, spec)


def _ratio(peer: dict, ours: dict, field: str) -> float | None:
    if "error" in peer or "error" in ours or "unavailable" in ours or field not in ours:
        return None
    return peer[field] / ours[field]


def _cell(r: dict, field: str, spec: str = ".1f") -> str:
    if "unavailable" in r:
        return r["unavailable"] if field == "train_ms_median" else "—"
    if "error" in r:
        return "error" if field == "train_ms_median" else "—"
    value = r
    for part in field.split("."):
        value = value[part]
    return _fmt(value, spec)


def markdown_table(rows: list[tuple[dict, dict]]) -> str:
    head = ("| cfg | model | params nopx / peer | train ms/step nopx | peer | **speed-up** "
            "| fwd ms nopx | peer | fwd speed-up | train samples/s nopx / peer "
            "| peak RSS train MiB nopx / peer | page faults/step nopx | compile s nopx "
            "| other CPU nopx / peer |")
    lines = [head, "|" + "---|" * 14]
    for ours, peer in rows:
        tr, fr = _ratio(peer, ours, "train_ms_median"), _ratio(peer, ours, "forward_ms_median")
        lines.append("| " + " | ".join([
            ours["key"], ours["name"],
            f"{_cell(ours, 'params_real', ',')} / {_cell(peer, 'params_real', ',')}",
            _cell(ours, "train_ms_median"), _cell(peer, "train_ms_median"),
            "—" if tr is None else f"**{tr:.2f}x**",
            _cell(ours, "forward_ms_median"), _cell(peer, "forward_ms_median"),
            "—" if fr is None else f"{fr:.2f}x",
            f"{_cell(ours, 'train_samples_per_s')} / {_cell(peer, 'train_samples_per_s')}",
            f"{_cell(ours, 'rss_mib.peak_train', '.0f')} / "
            f"{_cell(peer, 'rss_mib.peak_train', '.0f')}",
            _cell(ours, "train_minor_faults_per_step", ",.0f"),
            _cell(ours, "train_first_call_s", ".1f"),
            f"{_cell(ours, 'foreign_cpu_share', '.0%')} / {_cell(peer, 'foreign_cpu_share', '.0%')}",
        ]) + " |")
    return "\n".join(lines)


def report_block(report: dict) -> str:
    m, v, s = report["machine"], report["versions"], report["settings"]
    peer_env = report["peer_versions"]
    table = markdown_table([(r["nopx"], r["peer"]) for r in report["results"]])
    begin, end = _marks(s["malloc"])
    malloc = ("glibc defaults" if s["malloc"] == "default" else "tuned for both sides: " +
              " ".join(f"{k}={v}" for k, v in TUNED_MALLOC_ENV.items()))
    return "\n".join([
        begin,
        "## FNO training step and forward pass: nopx vs neuraloperator "
        f"(`bench/train_step.py`, malloc={s['malloc']})",
        "",
        f"- Date: {report['timestamp_utc']} (UTC)",
        f"- Machine: {m['cpu_model']}, {m['cpu_count']} cores, {m['memory_gib']} GiB, "
        f"{m['platform']}; CPU only",
        f"- Threads: {s['threads']} for both (driver pinned to CPUs {s['pinned_cpus']} with "
        f"sched_setaffinity = taskset; XLA:CPU sizes its pool from that mask; torch also gets "
        f"set_num_threads({s['threads']})); XLA_FLAGS=`{s['xla_flags'] or '(unset)'}`",
        f"- nopx side: Python {v['python']}, jax {v['jax']}, jaxlib {v['jaxlib']}, flax "
        f"{v['flax']}, optax {v['optax']}, numpy {v['numpy']}, nopx {v['nopx']} "
        f"({v['nopx_commit']})",
        f"- Peer side: torch {peer_env.get('torch', '—')}, neuraloperator "
        f"{peer_env.get('neuralop', '—')} (venv `bench/.peer-venv`), driven by "
        f"`{s['peer_script']}`",
        f"- Command: `{report['command']}`",
        f"- Memory allocator: {malloc}",
        f"- Timing: float32, synthetic normal data, median of {s['iters']} timed calls after "
        f"{s['warmup']} warm-ups (nopx: plus the first, compiling call, shown as compile s); "
        "train step = forward + relative L2 (summed over the batch on both sides) + backward + "
        "Adam(1e-3); one child process per config and library, peer and nopx alternating; "
        f"a child counts as contended above {s['max_other_cpu']:.0%} foreign CPU and is re-run "
        f"up to {s['attempts']} times.",
        "- speed-up = peer ms / nopx ms (above 1: nopx faster). Target: train speed-up >= 2x "
        "on every config.",
        "",
        table,
        "",
        end,
    ])


def write_results(path: Path, block: str, malloc: str) -> None:
    """Replace this script's block for ``malloc`` in ``path``, keeping everything else."""
    begin, end = _marks(malloc)
    text = path.read_text() if path.exists() else "# nopx benchmark results\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


# --------------------------------------------------------------------------- #

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="a,b,c,d,e", help="comma-separated keys (default %(default)s)")
    p.add_argument("--iters", type=int, default=10, help="timed calls, median reported")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    p.add_argument("--threads", type=int, default=2, help="CPUs for each benchmark child")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attempts", type=int, default=3,
                   help="re-run a contended child up to this many times, keep the quietest")
    p.add_argument("--max-other-cpu", type=float, default=0.05,
                   help="foreign CPU share above which a child counts as contended")
    p.add_argument("--quiet-wait", type=float, default=120.0,
                   help="before each child, wait up to this many seconds for a quiet machine")
    p.add_argument("--peer-script", type=Path, default=DEFAULT_PEER_SCRIPT,
                   help="neuraloperator peer script (default %(default)s)")
    p.add_argument("--peer-venv", type=Path, default=DEFAULT_PEER_VENV,
                   help="venv for torch + neuraloperator, created if missing (default %(default)s)")
    p.add_argument("--no-peer", action="store_true", help="run the nopx side only")
    p.add_argument("--malloc", choices=("default", "tuned"), default="default",
                   help="glibc malloc of both sides' children: defaults, or tuned so that "
                        "big freed blocks are reused instead of unmapped and faulted in again")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                   help="markdown file whose generated block is replaced (default %(default)s)")
    p.add_argument("--json", type=Path, help="also write the raw results as JSON")
    p.add_argument("--no-write", action="store_true", help="print the table, write no files")
    p.add_argument("--worker", metavar="KEY", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.peer_script = args.peer_script.resolve()
    peer_mod = load_peer_module(args.peer_script)
    configs = peer_mod.CONFIGS

    if args.worker:
        print(json.dumps(run_worker(configs[args.worker], args)))
        return 0

    keys = [k.strip() for k in args.configs.split(",") if k.strip()]
    unknown = [k for k in keys if k not in configs]
    if unknown:
        raise SystemExit(f"unknown config(s) {unknown}; the peer script knows {sorted(configs)}")

    pinned = _pin_threads(args.threads)
    args.child_env = TUNED_MALLOC_ENV if args.malloc == "tuned" else {}
    peer_python, peer_versions = (None, {}) if args.no_peer else ensure_peer_venv(args.peer_venv)
    skipped = {"key": "", "name": "", "error": "not run (--no-peer)"}

    results = []
    for i, key in enumerate(keys):
        name = configs[key].name
        print(f"[{key}] {name}", file=sys.stderr, flush=True)
        sides = ["peer", "nopx"] if i % 2 == 0 else ["nopx", "peer"]
        row = {}
        for side in sides:
            if side == "peer" and args.no_peer:
                row[side] = {**skipped, "key": key, "name": name}
                continue
            row[side] = measure(side, key, name, args, peer_python)
        if "name" in row["nopx"]:
            row["nopx"]["name"] = name
        results.append(row)

    command = " ".join(shlex.quote(a) for a in
                       [sys.executable, os.path.relpath(__file__, REPO), *sys.argv[1:]])
    report = {
        "timestamp_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "command": command,
        "machine": _machine(),
        "versions": _versions(),
        "peer_versions": peer_versions,
        "settings": {
            "iters": args.iters, "warmup": args.warmup, "threads": args.threads,
            "pinned_cpus": pinned, "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "malloc": args.malloc,
            "attempts": args.attempts, "max_other_cpu": args.max_other_cpu,
            "peer_script": os.path.relpath(args.peer_script, REPO),
        },
        "results": results,
    }
    print(markdown_table([(r["nopx"], r["peer"]) for r in results]))
    if not args.no_write:
        write_results(args.results, report_block(report), args.malloc)
        print(f"\nwrote {args.results}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all("error" not in r["nopx"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
