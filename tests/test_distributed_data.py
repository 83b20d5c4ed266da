"""What each process of a multi-process run reads, without starting processes: the shares
of the normaliser sums and their combination, the lazy splits (plain and all2all pairs),
the read log.

The real 2-process run is tests/test_distributed.py (slow)."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import pytest

from nopx.config import DataConfig, TimeConfig
from nopx.datagen.dataset import DatasetWriter
from nopx.distributed import Process
from nopx.training.all2all import PairSplit, moments_normalizer
from nopx.training.data import NORM_CHUNK, READ_LOG, Split, chunk_share, load_splits

N = 150  # samples: 3 normaliser chunks in a split of all of them


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> pathlib.Path:
    """``N`` samples of fields ``a``, ``u`` (4x4) and trajectories ``w``, ``v`` (6 slices of
    4x4), 1e6 from zero mean, so that the float64 summation order shows in the last bits."""
    path = tmp_path_factory.mktemp("data") / "d.h5"
    rng = np.random.default_rng(0)
    fields = {"a": (4, 4), "u": (4, 4), "w": (6, 4, 4), "v": (6, 4, 4)}
    with DatasetWriter.create(path, n_samples=N, fields=fields, n_params=1, dtype="float32",
                              attrs={"pde": "demo", "recipe": "pde: demo\n", "seed": 0}) as writer:
        writer.write(list(range(N)), {name: 1e6 + rng.standard_normal((N, *shape))
                                      for name, shape in fields.items()},
                     np.zeros((N, 1)), iterations=[0] * N, matvecs=[0] * N,
                     residual=[0.0] * N, seconds=[0.0] * N)
        writer.finish(rtol=1.0)
    return path


def _splits(path: pathlib.Path, in_memory: bool) -> list[Split]:
    """A field split (``a``, ``u`` -> ``u``: a field in both) and a trajectory split."""
    return [Split(path, ["a", "u"], ["u"], range(N), in_memory),
            Split(path, ["w"], ["w"], range(N), in_memory, TimeConfig(input=2), output_steps=3)]


def _one_pass(split: Split) -> tuple[np.ndarray, ...]:
    """The normalisers as one process summed them before shares existed (the reference):
    one running float64 total per statistic, batches of 64 in turn, channel by channel."""
    shared = split.time is not None
    names_x = ("traj",) if shared else split.inputs
    names_y = ("traj",) if shared else split.targets
    sums = {name: np.zeros(3) for name in names_x + names_y}
    for x, y in split.batches(64):
        for arrays, names in ((x, names_x), (y, names_y)):
            for c in range(arrays.shape[-1]):
                values = arrays[..., c].astype(np.float64)
                sums[names[0] if shared else names[c]] += (
                    values.size, values.sum(), np.square(values).sum())
    stats = []
    for names in (names_x, names_y):
        count, total, squares = np.array([sums[n] for n in names]).T
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        stats += [mean.astype(np.float32), np.maximum(std, 1e-8).astype(np.float32)]
    return tuple(stats)


def _flat(normalizers) -> tuple[np.ndarray, ...]:
    return tuple(array for norm in normalizers for array in (norm.mean, norm.std))


def _assert_bitwise(left: tuple[np.ndarray, ...], right: tuple[np.ndarray, ...]) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


def test_chunk_shares_cover_every_chunk_once_in_order():
    for size in (1, 63, 64, 65, 150, 1000):
        chunks = -(-size // NORM_CHUNK)
        for count in (1, 2, 3, 5, 8):
            shares = [chunk_share(size, Process(p, count)) for p in range(count)]
            assert [c for share in shares for c in share] == list(range(chunks))


@pytest.mark.parametrize("in_memory", [True, False])
def test_one_process_normalizers_are_unchanged(dataset, in_memory):
    for split in _splits(dataset, in_memory):
        _assert_bitwise(_flat(split.fit_normalizers()), _one_pass(split))


def test_shared_sums_combine_to_the_one_process_normalizers_bit_for_bit(dataset):
    """Every process sums only its chunks; the chunks' sums, put together in process order
    (what ``gather_blocks`` hands every process), give the one-process normalisers."""
    for split in _splits(dataset, in_memory=False):
        alone = _flat(split.fit_normalizers())
        for count in (2, 3, 4):
            blocks = [split.normalizer_sums(chunk_share(len(split), Process(p, count)))
                      for p in range(count)]
            assert sum(len(block) for block in blocks) == -(-N // NORM_CHUNK)
            _assert_bitwise(_flat(split.normalizers_from(np.concatenate(blocks))), alone)
        # The data tells summation orders apart: adding the chunks' totals first differs.
        subtotal = _flat(split.normalizers_from(split.normalizer_sums().sum(0, keepdims=True)))
        assert any((a.view(np.uint32) != b.view(np.uint32)).any() for a, b in zip(subtotal, alone))


def test_one_of_several_processes_reads_lazily_and_only_what_it_asks_for(dataset, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv(READ_LOG, str(tmp_path))
    cfg = DataConfig(path=str(dataset), n_train=140, n_val=12, n_test=10)
    alone = load_splits(cfg, process=Process(0, 1))
    assert all(split.x is not None for split in alone)  # auto, fits: in memory
    reads = tmp_path / "reads-0.txt"
    assert len(reads.read_text().split()) == N  # each sample once, whole splits
    reads.unlink()

    second = load_splits(cfg, process=Process(1, 2))
    assert all(split.x is None for split in second) and not (tmp_path / "reads-1.txt").exists()
    x, y = second.train.read(np.array([5, 2]))
    np.testing.assert_array_equal(x, alone.train.x[[5, 2]])
    np.testing.assert_array_equal(y, alone.train.y[[5, 2]])
    logged = (tmp_path / "reads-1.txt").read_text().split()
    assert logged == [str(i) for i in second.train.indices[[5, 2]]]
    always = load_splits(dataclasses.replace(cfg, in_memory="always"), process=Process(1, 2))
    assert all(split.x is not None for split in always)


ALL2ALL = TimeConfig(mode="all2all", stride=2, pairs=4)  # snapshots 0, 2, 4: 4 of 6 pairs each


def _pair_splits(path: pathlib.Path, in_memory: bool) -> list[PairSplit]:
    """All2all splits of every trajectory: one field, and two learned together."""
    return [PairSplit(path, fields, range(N), ALL2ALL, in_memory=in_memory)
            for fields in (["w"], ["w", "v"])]


def _whole_array(split: PairSplit) -> tuple[np.ndarray, ...]:
    """The all2all normalisers as one process computed them before shares existed (the
    reference): ``np.mean`` and ``np.std`` over every held snapshot at once."""
    values = split.snapshots.reshape(-1, split.snapshots.shape[-1]).astype(np.float64)
    mean = values.mean(axis=0).astype(np.float32)
    std = np.maximum(values.std(axis=0), 1e-8).astype(np.float32)
    return np.append(mean, np.float32(0)), np.append(std, np.float32(1)), mean, std


def test_pair_split_normalizers_are_the_whole_array_ones_and_shares_combine_to_them(dataset):
    for held, lazy in zip(_pair_splits(dataset, True), _pair_splits(dataset, False)):
        alone = _flat(held.fit_normalizers())
        _assert_bitwise(alone, _whole_array(held))
        _assert_bitwise(_flat(lazy.fit_normalizers()), alone)
        for count in (2, 3, 4):
            blocks = [lazy.snapshot_moments(chunk_share(N, Process(p, count)))
                      for p in range(count)]
            assert sum(len(block) for block in blocks) == -(-N // NORM_CHUNK)
            _assert_bitwise(_flat([moments_normalizer(np.concatenate(blocks))]), alone[2:])
        # The data tells the algorithms apart: a one-pass sum of squares per chunk differs.
        values = held.snapshots.reshape(-1, held.snapshots.shape[-1]).astype(np.float64)
        one_pass = np.sqrt(np.square(values).mean(0) - values.mean(0) ** 2).astype(np.float32)
        assert (one_pass.view(np.uint32) != alone[3].view(np.uint32)).any()


def _taken_log(folder: pathlib.Path, process: int) -> list[int]:
    """The dataset indices ``process`` logged (``NOPX_READ_LOG``) since the last call."""
    log = folder / f"reads-{process}.txt"
    if not log.exists():
        return []
    read = [int(i) for i in log.read_text().split()]
    log.unlink()
    return read


def test_pair_split_of_one_of_several_processes_reads_only_the_trajectories_it_uses(
        dataset, tmp_path, monkeypatch):
    monkeypatch.setenv(READ_LOG, str(tmp_path))
    cfg = DataConfig(path=str(dataset), inputs=("w", "v"), targets=("w", "v"), n_train=140,
                     n_val=12, n_test=10, time=ALL2ALL)
    alone = load_splits(cfg, process=Process(0, 1))
    assert all(split.snapshots is not None for split in alone)  # auto, fits: in memory
    assert sorted(_taken_log(tmp_path, 0)) == list(range(N))

    second = load_splits(cfg, process=Process(1, 2))
    assert all(split.snapshots is None for split in second) and not _taken_log(tmp_path, 1)
    positions = np.array([17, 3, 16, 250])  # pairs of the trajectories at rows 4, 0, 4, 62
    for lazy, held in zip(second.train.read(positions), alone.train.read(positions)):
        np.testing.assert_array_equal(lazy.view(np.uint32), held.view(np.uint32))
    assert _taken_log(tmp_path, 1) == second.train.indices[[0, 4, 62]].tolist()  # each once
    share = chunk_share(len(second.train.indices), Process(1, 2))
    second.train.snapshot_moments(share)  # its share of the normaliser sums
    assert _taken_log(tmp_path, 1) == second.train.indices[share.start * NORM_CHUNK:].tolist()
    always = load_splits(dataclasses.replace(cfg, in_memory="always"), process=Process(1, 2))
    assert all(split.snapshots is not None for split in always)
