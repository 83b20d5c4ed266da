"""Multi-process training through the real CLI: 2 local processes x 4 CPU devices, on JAX's
distributed runtime (``nopx train --distributed``), against 1 process x 8 devices."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
import socket
import subprocess

import numpy as np
import pytest
import yaml

from helpers import NOPX, run_nopx
from nopx import config as nopx_config
from nopx.distributed import Process
from nopx.training.all2all import PairSplit
from nopx.training.checkpoint import Checkpoints
from nopx.training.data import NORM_CHUNK, READ_LOG, Split, chunk_share, load_splits
from nopx.training.source import epoch_batches

# Both runs use the same 8-device mesh, so the same global batches meet the same program:
# the training losses are bit-identical, evaluation differs in the last float32 bits.
TOLERANCE = 1e-6


def _config(tmp_path: pathlib.Path, data: pathlib.Path, **data_keys) -> pathlib.Path:
    cfg = {
        "name": "dist",
        # in_memory auto: one process holds the splits, each of two reads its rows from the file.
        "data": {"path": str(data), "n_train": 64, "n_test": 16, **data_keys},
        "model": {"name": "fno", "n_modes": [8, 8], "hidden_channels": 8, "n_layers": 2},
        "optim": {"lr": 3e-3, "schedule": "cosine"},
        "train": {"epochs": 2, "batch_size": 8, "log_every": 1},
        "checkpoint": {"every_steps": 3},
        "mesh": {"data": -1},
    }
    path = tmp_path / "dist.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _two_processes(config: pathlib.Path, run_dir: pathlib.Path, *extra: str,
                   env: dict[str, str] | None = None) -> list[str]:
    """Run ``nopx train --distributed`` as processes 0 and 1; return their stderr."""
    port = _free_port()
    procs = [subprocess.Popen(
        [NOPX, "train", "--distributed", "--config", str(config),
         "--set", f"train.run_dir={run_dir}", *extra],
        env={**os.environ, "JAX_NUM_CPU_DEVICES": "4", "JAX_PLATFORMS": "cpu",
             "JAX_COORDINATOR_ADDRESS": f"localhost:{port}", "JAX_NUM_PROCESSES": "2",
             "JAX_PROCESS_ID": str(index), **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for index in range(2)]
    outputs = [proc.communicate(timeout=900) for proc in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    return [err for _, err in outputs]


def _one_process(config: pathlib.Path, run_dir: pathlib.Path, *extra: str,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_nopx("train", "--config", str(config), "--set", f"train.run_dir={run_dir}", *extra,
                    env={"JAX_NUM_CPU_DEVICES": "8", "JAX_PLATFORMS": "cpu", **(env or {})})


def _curve(run_dir: pathlib.Path) -> list[dict]:
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for event in events:
        event.pop("train/seconds", None)
    return events


def _assert_same_curve(a: list[dict], b: list[dict], *, exact_train: bool = True) -> None:
    assert [sorted(e) for e in a] == [sorted(e) for e in b]
    for left, right in zip(a, b):
        for key, value in left.items():
            if key.startswith("train/") and exact_train:
                assert right[key] == value, key
            elif isinstance(value, float):
                assert right[key] == pytest.approx(value, rel=TOLERANCE), key


def _taken(split: Split | PairSplit, positions: np.ndarray) -> list[int]:
    """The dataset indices one read of ``positions`` takes from the file: a sample each, or
    each trajectory the pairs need once."""
    if isinstance(split, PairSplit):
        return split.indices[np.unique(split.pairs[positions, 0])].tolist()
    return split.indices[positions].tolist()


def _expected_reads(config: pathlib.Path, devices: int = 8,
                    processes: int = 2) -> list[collections.Counter]:
    """The dataset indices each process of a run of ``config`` reads from the file, with
    multiplicity: the first training sample (the grid and shape check), its share of the
    normaliser chunks, then its rows of every batch (contiguous, ``devices // processes``
    data shards each) of every epoch, of each validation (every epoch) and of the test.
    A batch whose rows do not divide over the devices is replicated: every process reads
    it whole."""
    cfg = nopx_config.load(config)
    batch, epochs = cfg.train.batch_size, cfg.train.epochs
    # Lazy splits (nothing read here): their sizes, indices and pairs.
    train, val, test = load_splits(dataclasses.replace(cfg.data, in_memory="never"),
                                   seed=cfg.seed, process=Process(0, processes))

    def rows(process: int, positions: np.ndarray) -> np.ndarray:
        share = len(positions) // processes
        whole = len(positions) % devices
        return positions if whole else positions[process * share:(process + 1) * share]

    def in_turn(size: int) -> list[np.ndarray]:
        return [np.arange(start, min(start + batch, size)) for start in range(0, size, batch)]

    reads = []
    for process in range(processes):
        chunks = chunk_share(len(train.indices), Process(process, processes))
        read = _taken(train, np.arange(1)) + train.indices[
            chunks.start * NORM_CHUNK:chunks.stop * NORM_CHUNK].tolist()
        for epoch in range(epochs):
            for positions in epoch_batches(cfg.seed, epoch, len(train), batch):
                read += _taken(train, rows(process, positions))
            for positions in in_turn(len(val)):
                read += _taken(val, rows(process, positions))
        for positions in in_turn(len(test)):
            read += _taken(test, rows(process, positions))
        reads.append(collections.Counter(read))
    return reads


def _normalizers(config: pathlib.Path, run_dir: pathlib.Path) -> dict:
    checkpoints = Checkpoints(run_dir, nopx_config.load(config).checkpoint)
    try:
        return checkpoints.read_meta()["normalizers"]
    finally:
        checkpoints.close()


@pytest.mark.slow
def test_two_processes_match_one_process_and_resume_across_hosts(tmp_path, darcy_small):
    config = _config(tmp_path, darcy_small)
    one = _one_process(config, tmp_path / "one")
    assert one.returncode == 0, one.stderr
    assert "cpu x8 (mesh data 8 x model 1, 1 processes)" in one.stderr

    log = tmp_path / "reads"
    log.mkdir()
    first, second = _two_processes(config, tmp_path / "two", env={READ_LOG: str(log)})
    assert "cpu x8 (mesh data 8 x model 1, 2 processes)" in first
    assert "train/loss" not in second            # only process 0 reports and writes
    curve = _curve(tmp_path / "one")
    assert len(curve) == 3                        # 2 epochs and the test: written once
    _assert_same_curve(curve, _curve(tmp_path / "two"))
    # Each process read only its rows and its share of the normaliser sums, and the shares
    # combine to the one-process normalisers bit for bit (JSON floats of float32 values).
    for process, expected in enumerate(_expected_reads(config)):
        read = (log / f"reads-{process}.txt").read_text().split()
        assert collections.Counter(int(i) for i in read) == expected, process
    assert _normalizers(config, tmp_path / "two") == _normalizers(config, tmp_path / "one")

    # Killed mid-epoch on one host, resumed on two: the same batches, the same curve.
    killed = _one_process(config, tmp_path / "moved", env={"NOPX_FAULT": "train_step:5"})
    assert killed.returncode == -9, killed.stderr
    resumed, _ = _two_processes(config, tmp_path / "moved", "--resume")
    assert "resumed" in resumed
    _assert_same_curve(curve, _curve(tmp_path / "moved"))


@pytest.mark.slow
def test_two_processes_match_one_process_in_all2all(tmp_path, ns_small):
    """The all2all pair splits: each process reads the trajectories of its rows' pairs and
    of its share of the normaliser chunks; the normalisers are one process's bit for bit.

    The curve agrees to float32 rounding, not bit for bit: here the second epoch's
    train/loss differs in its last bit, with every process holding the whole splits
    (data.in_memory: always) too, so the difference is the training program's, not the
    data's (the Darcy run above stays bit-identical)."""
    config = _config(tmp_path, ns_small, inputs=["w"], targets=["w"], n_train=8, n_test=4,
                     time={"mode": "all2all", "stride": 3, "output": 4, "pairs": 8})
    one = _one_process(config, tmp_path / "one")
    assert one.returncode == 0, one.stderr
    log = tmp_path / "reads"
    log.mkdir()
    _two_processes(config, tmp_path / "two", env={READ_LOG: str(log)})
    _assert_same_curve(_curve(tmp_path / "one"), _curve(tmp_path / "two"), exact_train=False)
    for process, expected in enumerate(_expected_reads(config)):
        read = (log / f"reads-{process}.txt").read_text().split()
        assert collections.Counter(int(i) for i in read) == expected, process
    assert _normalizers(config, tmp_path / "two") == _normalizers(config, tmp_path / "one")
