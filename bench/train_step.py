#!/usr/bin/env python3
"""nopx vs neuraloperator 2.0.0: FNO training step and forward pass, side by side.

For every configuration of ``bench/peers/fno_configs.py`` (a-e) this runs, one after the
other, one child process per side:

* the peer: ``bench/peers/neuralop_train_step.py`` inside ``bench/.peer-venv`` (torch 2.13.0
  CPU + neuraloperator 2.0.0, created on first use by ``bench/peers/venv.py``);
* nopx: ``nopx.models.FNO`` (``TFNO`` for config c) with neuraloperator's defaults, in this
  interpreter (``--worker``).

The sides alternate per configuration and round (a: peer first, b: nopx first, ...), so a
burst of foreign load hits both sides of one ratio. Each configuration runs ``--rounds``
rounds of one child per side: this machine has slow spells that no foreign process explains
(the same step 10-15% slower for a minute, on either side), so one pair of children can land
a ratio 10% off. The table gives each side's median over the rounds, the median of the
per-round speed-ups with their range, and the largest peak RSS of any round.

What is timed, identically on both sides: float32, synthetic normal data, train step =
forward + relative L2 summed over the batch + backward + Adam(1e-3) (nopx: one ``jax.jit``
around ``value_and_grad`` and the optax update, parameters and optimiser state donated,
``block_until_ready`` per step), forward = the jitted apply (peer: ``eval()`` under
``inference_mode``); median of ``--iters`` calls after ``--warmup``; nopx's first
(compiling) call timed apart. Peak RSS is the child's ``ru_maxrss``.

Allocator (``--malloc``): ``nopx`` (default) is what a library user gets: ``import nopx``
applies its ``mallopt`` settings (``nopx/_malloc.py``), and the peer driver applies the same
ones; ``default`` runs both on glibc's defaults (``NOPX_MALLOC=default``); ``tunables`` is
what ``nopx train`` gets: both sides start with its ``GLIBC_TUNABLES`` (``nopx.cli``), and
nopx's import still makes JAX's dispatch synchronous, which keeps the step's block in the
main arena (``nopx/_malloc.py``).

Threads: the driver pins itself and its children to ``--threads`` CPUs (``sched_setaffinity``;
XLA:CPU sizes its pool from the mask, torch gets ``set_num_threads``).

Usage (repository root)::

    python bench/train_step.py                   # configs a-e -> the block in bench/RESULTS.md
    python bench/train_step.py --quick           # smoke test: 3 timed steps, no waiting, no file
    python bench/train_step.py --configs a --no-peer --no-write   # nopx only
    python bench/train_step.py --no-write --json run.json        # later: --from-json run.json

speed-up = peer ms / nopx ms (above 1: nopx is faster).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from contention import run_children, wait_for_quiet
from generated import markers, write_block
from peers import venv
from peers.fno_configs import CONFIGS, FNOConfig
from peers.timing import peak_rss_mib, step_report, timed_calls

from nopx.cli import TUNED_MALLOC  # what `nopx train` re-execs itself with

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEER_DRIVER = HERE / "peers" / "neuralop_train_step.py"
DEFAULT_RESULTS = HERE / "RESULTS.md"
# Per --malloc: the environment of both children, and the peer driver's --malloc.
MALLOC_MODES = {
    "nopx": ({}, "nopx"),
    "default": ({"NOPX_MALLOC": "default"}, "default"),
    "tunables": ({"GLIBC_TUNABLES": TUNED_MALLOC}, "default"),
}


def _tag(malloc: str) -> str:
    return f"bench/train_step.py malloc={malloc}"


# --------------------------------------------------------------------------- #
# The nopx side: one configuration in this process, one JSON line on stdout.
# --------------------------------------------------------------------------- #

def run_worker(cfg: FNOConfig, iters: int, warmup: int, seed: int) -> dict:
    import nopx  # noqa: F401  (its allocator settings, before JAX allocates)
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    import nopx.models as models
    from nopx.losses import relative_lp

    rss_import = peak_rss_mib()
    cls = models.TFNO if "factorization" in cfg.model_kwargs else models.FNO
    model = cls(cfg.in_channels, cfg.out_channels, cfg.n_modes, cfg.hidden_channels,
                n_layers=cfg.n_layers, **cfg.model_kwargs, rngs=nnx.Rngs(seed))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    del model
    n_params = sum(int(p.size) for p in jax.tree.leaves(params))
    kx, ky = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(kx, (cfg.batch, *cfg.grid, cfg.in_channels), jnp.float32)
    y = jax.random.normal(ky, (cfg.batch, *cfg.grid, cfg.out_channels), jnp.float32)
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)

    @jax.jit
    def forward(params, rest, x):
        return nnx.merge(graphdef, params, rest)(x)

    def loss_fn(params, rest, x, y):
        # batch mean x batch = neuraloperator's batch sum
        return relative_lp(nnx.merge(graphdef, params, rest)(x), y) * x.shape[0]

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, rest, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, rest, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    fwd = timed_calls(lambda p=params: jax.block_until_ready(forward(p, rest, x)), warmup, iters)
    rss_forward = peak_rss_mib()
    state = {"params": params, "opt": opt_state}
    del params, opt_state  # donated from here on
    losses = []

    def step() -> None:
        state["params"], state["opt"], loss = jax.block_until_ready(
            train_step(state["params"], state["opt"], rest, x, y))
        losses.append(float(loss))

    train = timed_calls(step, warmup, iters)
    return step_report(n_params, train, fwd, losses, rss_import, rss_forward, {"jax": jax.__version__})


# --------------------------------------------------------------------------- #
# Driver
# --------------------------------------------------------------------------- #

def _child(side: str, key: str, args: argparse.Namespace, peer_python: Path | None) -> dict:
    env, peer_malloc = MALLOC_MODES[args.malloc]
    common = ["--iters", str(args.iters), "--warmup", str(args.warmup), "--seed", str(args.seed)]
    argv = ([str(peer_python), str(PEER_DRIVER), "--config", key, "--threads", str(args.threads),
             "--malloc", peer_malloc, *common] if side == "peer"
            else [sys.executable, str(Path(__file__).resolve()), "--worker", key, *common])
    (proc,), share, _ = run_children([argv], env)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        return {"error": tail[0]}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "foreign_cpu_share": share}


def measure(side: str, key: str, args: argparse.Namespace, peer_python: Path | None) -> dict:
    """The least contended of up to ``--attempts`` runs of one side of one config."""
    best = None
    for attempt in range(1, args.attempts + 1):
        quiet = wait_for_quiet(args.quiet_wait, args.max_other_cpu)
        result = _child(side, key, args, peer_python)
        result.update(attempt=attempt, quiet_share_before=quiet,
                      measured_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        if "error" in result:
            print(f"[{key}] {side}: {result['error']}", file=sys.stderr, flush=True)
            return result
        share = result["foreign_cpu_share"]
        print(f"[{key}] {side} attempt {attempt}: train {result['train']['ms_median']:.1f} ms, "
              f"forward {result['forward']['ms_median']:.1f} ms, other CPU "
              f"{'n/a' if share is None else f'{share:.0%}'}", file=sys.stderr, flush=True)
        if best is None or (share or 0.0) < (best["foreign_cpu_share"] or 0.0):
            best = result
        if share is None or share <= args.max_other_cpu:
            break
    return best


def combine(runs: list[dict]) -> dict:
    """One side's rounds of one config as one record: medians of the timings, the largest
    peak RSS and foreign CPU share; the rounds themselves under ``"rounds"``."""
    if errors := [r for r in runs if "error" in r]:
        return {**errors[0], "rounds": runs}

    def values(path: str) -> list:
        return [v for r in runs if (v := _get(r, path)) is not None]

    def median(path: str):
        return statistics.median(v) if (v := values(path)) else None

    shares = values("foreign_cpu_share")
    return {"train": {"ms_median": median("train.ms_median"),
                      "minor_faults": median("train.minor_faults"),
                      "first_s": median("train.first_s")},
            "forward": {"ms_median": median("forward.ms_median")},
            "rss_mib": {"peak_train": max(values("rss_mib.peak_train"), default=None)},
            "foreign_cpu_share": max(shares) if shares else None,
            "rounds": runs}


def round_ratios(peer: dict, ours: dict, path: str) -> list[float]:
    """peer / nopx of ``path`` in each round both sides completed."""
    pairs = zip(peer.get("rounds", [peer]), ours.get("rounds", [ours]))
    return [p / o for rp, ro in pairs
            if (p := _get(rp, path)) is not None and (o := _get(ro, path)) is not None]


def _git_commit() -> str:
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"],
                           capture_output=True, text=True).stdout.strip()
    return (git or "no commit") + (" + uncommitted changes" if dirty else "")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def _get(r: dict, path: str):
    for part in path.split("."):
        if not isinstance(r, dict) or part not in r:
            return None
        r = r[part]
    return r


def _fmt(value, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def _ratio(peer: dict, ours: dict, path: str) -> str:
    """The median per-round speed-up, with the range over the rounds when there are several."""
    ratios = round_ratios(peer, ours, path)
    if not ratios:
        return "—"
    spread = f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
    return f"{statistics.median(ratios):.2f}x{spread}"


def _share(r: dict) -> str:
    share = r.get("foreign_cpu_share")
    return "error" if "error" in r else ("n/a" if share is None else f"{share:.0%}")


def markdown_table(rows: list[tuple[str, dict, dict]]) -> str:
    lines = ["| cfg | model | train ms nopx | peer | **train speed-up** | fwd ms nopx | peer "
             "| fwd speed-up | peak RSS MiB nopx / peer | page faults/step nopx / peer "
             "| compile s nopx | other CPU nopx / peer |", "|" + "---|" * 12]
    for key, ours, peer in rows:
        lines.append("| " + " | ".join([
            key, CONFIGS[key].name,
            _fmt(_get(ours, "train.ms_median")), _fmt(_get(peer, "train.ms_median")),
            f"**{_ratio(peer, ours, 'train.ms_median')}**",
            _fmt(_get(ours, "forward.ms_median")), _fmt(_get(peer, "forward.ms_median")),
            _ratio(peer, ours, "forward.ms_median"),
            f"{_fmt(_get(ours, 'rss_mib.peak_train'), '.0f')} / "
            f"{_fmt(_get(peer, 'rss_mib.peak_train'), '.0f')}",
            f"{_fmt(_get(ours, 'train.minor_faults'), ',.0f')} / "
            f"{_fmt(_get(peer, 'train.minor_faults'), ',.0f')}",
            _fmt(_get(ours, "train.first_s")),
            f"{_share(ours)} / {_share(peer)}",
        ]) + " |")
    return "\n".join(lines)


def report_block(report: dict, table: str) -> str:
    s = report["settings"]
    begin, end = markers(_tag(s["malloc"]))
    return "\n".join([
        begin,
        f"## FNO training step: nopx vs neuraloperator (`bench/train_step.py`, malloc={s['malloc']})",
        "",
        f"- Date: {report['timestamp_utc']} UTC; machine: {report['machine']}; "
        f"nopx {report['commit']}, jax {report['jax']}; peer {report['peer_versions']}",
        f"- Command: `{report['command']}`",
        f"- Threads: {s['threads']} per side (pinned CPUs {s['pinned_cpus']}); median of "
        f"{s['iters']} steps after {s['warmup']} warm-ups; {s.get('rounds', 1)} round(s) of one "
        f"child per side: ms = median over the rounds, speed-up = median of the per-round "
        f"ratios (range), peak RSS = largest of any round; a child counts as contended above "
        f"{s['max_other_cpu']:.0%} foreign CPU (last column) and is re-run up to "
        f"{s['attempts']} times. **Rows with foreign CPU above that are contended.**",
        "- speed-up = peer ms / nopx ms (above 1: nopx faster).",
        "",
        table,
        "",
        end,
    ])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="a,b,c,d,e", help="comma-separated keys (default %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: --iters 3 --warmup 1 --rounds 1 --attempts 1 --quiet-wait 0 "
                        "--no-write")
    p.add_argument("--iters", type=int, default=10, help="timed steps, median reported")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    p.add_argument("--threads", type=int, default=2, help="CPUs for each child")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--malloc", choices=tuple(MALLOC_MODES), default="nopx",
                   help="allocator settings of both sides (module docstring)")
    p.add_argument("--rounds", type=int, default=3,
                   help="children per side and config, alternating sides (module docstring)")
    p.add_argument("--attempts", type=int, default=3,
                   help="re-run a contended child up to this many times, keep the quietest")
    p.add_argument("--max-other-cpu", type=float, default=0.05,
                   help="foreign CPU share above which a child counts as contended")
    p.add_argument("--quiet-wait", type=float, default=120.0,
                   help="before each child, wait up to this many seconds for a quiet machine")
    p.add_argument("--no-peer", action="store_true", help="run the nopx side only")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                   help="markdown file whose generated block is replaced (default %(default)s)")
    p.add_argument("--json", type=Path, help="also write the raw results as JSON")
    p.add_argument("--from-json", type=Path, metavar="JSON",
                   help="run nothing: write the block of a run saved with --json")
    p.add_argument("--no-write", action="store_true", help="print the table, write no files")
    p.add_argument("--worker", metavar="KEY", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(CONFIGS[args.worker], args.iters, args.warmup, args.seed)))
        return 0
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        rows = [(r["key"], r["nopx"], r["peer"]) for r in report["results"]]
        malloc = report["settings"]["malloc"]
        write_block(args.results, _tag(malloc), report_block(report, markdown_table(rows)))
        print(f"wrote {args.results} from {args.from_json}", file=sys.stderr)
        return 0
    if args.quick:
        args.iters, args.warmup, args.rounds, args.attempts, args.quiet_wait, args.no_write = \
            3, 1, 1, 1, 0.0, True
    keys = [k.strip() for k in args.configs.split(",") if k.strip()]
    if unknown := [k for k in keys if k not in CONFIGS]:
        raise SystemExit(f"unknown config(s) {unknown}; known: {sorted(CONFIGS)}")
    pinned = sorted(os.sched_getaffinity(0))[:args.threads]
    os.sched_setaffinity(0, pinned)
    peer_python, peer_versions = (None, {}) if args.no_peer else venv.ensure(venv.NEURALOP)

    rows = []
    for i, key in enumerate(keys):
        print(f"[{key}] {CONFIGS[key].name}", file=sys.stderr, flush=True)
        sides = ["nopx"] if args.no_peer else ["peer", "nopx"]
        runs: dict[str, list[dict]] = {side: [] for side in sides}
        for r in range(args.rounds):
            for side in (sides if (i + r) % 2 == 0 else sides[::-1]):
                runs[side].append(measure(side, key, args, peer_python))
        peer = combine(runs["peer"]) if "peer" in runs else {"error": "not run (--no-peer)"}
        rows.append((key, combine(runs["nopx"]), peer))

    table = markdown_table(rows)
    print(table)
    from importlib.metadata import version

    report = {
        "timestamp_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "command": " ".join(shlex.quote(a) for a in ["python", "bench/train_step.py", *sys.argv[1:]]),
        "machine": f"{_cpu_model()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "commit": _git_commit(), "jax": version("jax"), "peer_versions": peer_versions,
        "settings": {"iters": args.iters, "warmup": args.warmup, "threads": args.threads,
                     "pinned_cpus": pinned, "malloc": args.malloc, "rounds": args.rounds,
                     "attempts": args.attempts,
                     "max_other_cpu": args.max_other_cpu},
        "results": [{"key": k, "nopx": o, "peer": p} for k, o, p in rows],
    }
    if not args.no_write:
        write_block(args.results, _tag(args.malloc), report_block(report, table))
        print(f"wrote {args.results}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all("error" not in o for _, o, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
