#!/usr/bin/env python3
"""Online vs fixed-file training at equal wall time (``data.online``, issue 15).

Two ``nopx train`` runs of one config (default ``experiments/darcy.yaml``), one after the
other, each stopped after ``--seconds`` of wall time (SIGINT; the last epoch checkpoint
stands), then ``nopx eval`` tests each run's validation-selected checkpoint:

* ``fixed``: the file's training samples, epoch after epoch;
* ``online``: ``data.online: true``, ``--workers`` producer processes streaming fresh
  samples of the same recipe into a buffer of ``--buffer`` samples.

Both use a constant learning rate (a run stopped at any time is not mid-schedule) and
validate every epoch and test on the same samples of the file. Per epoch it records
``val/rel_l2`` against the samples drawn and the distinct samples seen; it prints a
markdown table and writes ``--out`` (JSON). On a shared machine run it under ``nice`` and
read the two runs against each other only.

    nice python bench/online.py --seconds 240 --out runs/bench_online/result.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import signal
import subprocess
import sys
import time

NOPX = str(pathlib.Path(sys.executable).with_name("nopx"))


def _train(name: str, args: argparse.Namespace, extra: list[str]) -> dict:
    run_dir = pathlib.Path(args.root) / name
    sets = [f"train.run_dir={run_dir}", "train.epochs=10000", "optim.schedule=constant",
            "train.log_every=1000000", *args.set, *extra]
    command = [NOPX, "train", "--config", args.config, *(a for s in sets for a in ("--set", s))]
    log = (pathlib.Path(args.root) / f"{name}.log").open("w")
    started = time.perf_counter()
    # A shell's background job ignores SIGINT, and so would its children: restore it.
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        process.wait(timeout=args.seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        process.wait()
    wall = time.perf_counter() - started
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [e for e in events if "train/loss" in e]
    subprocess.run([NOPX, "eval", "--run", str(run_dir)], check=True, capture_output=True)
    test = list(json.loads((run_dir / "eval.json").read_text()).values())[0]
    return {"name": name, "wall_s": wall, "epochs": epochs, "test": test}


def _table(results: list[dict], batch: int, train_size: int) -> str:
    lines = ["| run | epochs | steps | samples drawn | distinct samples | draws per sample | "
             "best val rel L2 | test rel L2 (best-val checkpoint) |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        last = r["epochs"][-1]
        drawn = last["step"] * batch
        seen = last.get("train/online_seen", min(drawn, train_size))
        best = min(e["val/rel_l2"] for e in r["epochs"])
        lines.append(f"| {r['name']} | {last['epoch']} | {last['step']} | {drawn} | {seen} | "
                     f"{drawn / seen:.2f} | {best:.4f} | {r['test']['rel_l2']:.4f} |")
    return "\n".join(lines)


def _curve(results: list[dict], batch: int) -> str:
    lines = ["| samples drawn | " + " | ".join(f"{r['name']} val rel L2" for r in results) + " |",
             "|---|" + "---|" * len(results)]
    rows: dict[int, dict[str, float]] = {}
    for r in results:
        for e in r["epochs"]:
            rows.setdefault(e["step"] * batch, {})[r["name"]] = e["val/rel_l2"]
    for drawn in sorted(rows):
        lines.append(f"| {drawn} | " + " | ".join(
            f"{rows[drawn][r['name']]:.4f}" if r["name"] in rows[drawn] else "" for r in results) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="experiments/darcy.yaml")
    parser.add_argument("--seconds", type=float, default=240.0, help="wall time of each run")
    parser.add_argument("--workers", type=int, default=1, help="online producer processes")
    parser.add_argument("--buffer", type=int, default=1024, help="data.online_buffer")
    parser.add_argument("--root", default="runs/bench_online")
    parser.add_argument("--set", action="append", default=[], help="override for both runs")
    parser.add_argument("--out", default="runs/bench_online/result.json")
    args = parser.parse_args()
    pathlib.Path(args.root).mkdir(parents=True, exist_ok=True)
    from nopx import config

    cfg = config.load(args.config, args.set)
    results = [_train("fixed", args, []),
               _train("online", args, ["data.online=true", f"data.online_workers={args.workers}",
                                       f"data.online_buffer={args.buffer}"])]
    train_size = cfg.data.n_train - cfg.data.validation_size
    report = (f"{args.config}, {args.seconds:.0f} s each, batch {cfg.train.batch_size}\n\n"
              + _table(results, cfg.train.batch_size, train_size) + "\n\n"
              + _curve(results, cfg.train.batch_size))
    print(report)
    pathlib.Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
