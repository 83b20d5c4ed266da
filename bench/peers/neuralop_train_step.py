#!/usr/bin/env python3
"""neuraloperator 2.0.0 side of ``bench/train_step.py``: one FNO configuration, one JSON line.

Runs inside the peer environment (``bench/.peer-venv``, torch CPU + neuraloperator; see
:mod:`venv`). What it times matches the nopx worker in ``bench/train_step.py``:

* float32, ``torch.randn`` input and target from a fixed seed, channels-first as torch wants;
* the model: ``neuralop.models.FNO`` with the library defaults except the config's arguments;
* forward: ``model.eval()`` under ``torch.inference_mode()``;
* train step: ``zero_grad(set_to_none=True)``, forward, ``LpLoss(d, p=2)`` (relative L2,
  summed over the batch), backward, ``Adam(lr=1e-3).step()``;
* ``torch.set_num_threads(--threads)`` (intra- and inter-op);
* the allocator: with ``--malloc nopx`` the same ``mallopt`` settings nopx applies when it is
  imported (``nopx/_malloc.py``, loaded by path: nopx is not installed here).

Usage: ``.peer-venv/bin/python bench/peers/neuralop_train_step.py --config a``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

from fno_configs import CONFIGS, FNOConfig
from timing import peak_rss_mib, step_report, timed_calls

MALLOC_MODULE = Path(__file__).resolve().parents[2] / "nopx" / "_malloc.py"


def apply_nopx_malloc() -> bool:
    spec = importlib.util.spec_from_file_location("nopx_malloc", MALLOC_MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.tune_malloc()


def run(cfg: FNOConfig, iters: int, warmup: int, threads: int, seed: int) -> dict:
    import torch
    from neuralop.losses import LpLoss
    from neuralop.models import FNO

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)
    torch.manual_seed(seed)
    rss_import = peak_rss_mib()
    model = FNO(n_modes=cfg.n_modes, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
                hidden_channels=cfg.hidden_channels, n_layers=cfg.n_layers, **cfg.model_kwargs)
    # A complex weight is two real parameters.
    n_params = sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())
    x = torch.randn(cfg.batch, cfg.in_channels, *cfg.grid)
    y = torch.randn(cfg.batch, cfg.out_channels, *cfg.grid)
    loss_fn = LpLoss(d=len(cfg.grid), p=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    model.eval()

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    fwd = timed_calls(forward, warmup, iters)
    rss_forward = peak_rss_mib()

    model.train()
    losses = []

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))

    train = timed_calls(train_step, warmup, iters)
    return step_report(n_params, train, fwd, losses, rss_import, rss_forward, {"torch": torch.__version__})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, choices=sorted(CONFIGS))
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--malloc", choices=("nopx", "default"), default="nopx")
    args = parser.parse_args()
    tuned = args.malloc == "nopx" and apply_nopx_malloc()
    result = run(CONFIGS[args.config], args.iters, args.warmup, args.threads, args.seed)
    print(json.dumps({**result, "malloc_tuned": tuned}))


if __name__ == "__main__":
    main()
