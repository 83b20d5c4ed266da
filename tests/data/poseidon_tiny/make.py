"""Regenerate the tiny Poseidon fixture of ``tests/test_convert_poseidon.py``.

Runs in a separate environment with Poseidon's reference ``scOT`` package and a CPU torch,
never in nopx's own (nopx does not depend on torch):

.. code-block:: bash

    python -m venv /tmp/scot-venv
    /tmp/scot-venv/bin/pip install torch "transformers<4.50" safetensors numpy
    # Poseidon's code, camlab-ethz/poseidon (commit b8fa28f was used); its pyproject pins
    # torch 2.0.1 / transformers 4.29.2, which the reference model does not need:
    /tmp/scot-venv/bin/pip install --no-deps ./poseidon
    /tmp/scot-venv/bin/python tests/data/poseidon_tiny/make.py

It builds a small time-conditioned scOT (32² input, patch 2, window 4, three stages, so
shifted windows, padding-free merging and unmerging, ConvNeXt skips and a window that
shrinks to the grid all occur), draws every parameter at random at a scale where each
layer matters (Poseidon's own initialisation makes the conditioned norms output about
zero), saves it with ``save_pretrained`` (``config.json`` + ``model.safetensors``), and runs
it on a fixed input and lead times: ``io.npz`` holds ``x (B, C_in, H, W)``, ``t (B,)`` and
``y (B, C_out, H, W)``, float32 (3 channels in and out, as Poseidon maps a state to a state);
``tiny_state.bin`` holds four small tensors saved by ``torch.save``.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
import torch
from scOT.model import ScOT, ScOTConfig

HERE = pathlib.Path(__file__).resolve().parent


def randomise(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Every parameter at a scale of order one per layer (a fixed seed)."""
    for name, param in model.named_parameters():
        noise = torch.randn(param.shape, generator=generator)
        if name.endswith("logit_scale"):
            value = math.log(10.0) + 0.5 * noise
        elif ".norm." in name or "layernorm" in name:  # conditioned norms: γ(t) near 1
            value = (1.0 if name.endswith("weight.bias") else 0.0) + 0.2 * noise
        elif param.ndim == 1:                            # biases and the ConvNeXt layer scale
            value = 0.2 * noise
        else:                                            # weights: ~ 1/sqrt(fan in)
            value = noise / math.sqrt(param[0].numel())
        with torch.no_grad():
            param.copy_(value)


def write_reference(folder: pathlib.Path, config: ScOTConfig, seed: int) -> None:
    """A randomised reference scOT in ``folder``: ``save_pretrained`` files and ``io.npz``."""
    model = ScOT(config).eval()
    randomise(model, torch.Generator().manual_seed(seed))
    model.save_pretrained(folder, safe_serialization=True)
    rng = np.random.default_rng(seed + 1)
    size, channels = config.image_size, config.num_channels
    x = rng.standard_normal((2, channels, size, size)).astype(np.float32)
    t = np.array([0.25, 0.8], np.float32)
    with torch.no_grad():
        y = model(pixel_values=torch.from_numpy(x), time=torch.from_numpy(t)).output.numpy()
    np.savez_compressed(folder / "io.npz", x=x, t=t, y=y)
    count = sum(p.numel() for p in model.parameters())
    print(f"wrote {folder}: {count} parameters, |y| mean {np.abs(y).mean():.3f}")


def main() -> None:
    torch.manual_seed(0)
    write_reference(HERE, ScOTConfig(
        image_size=32, patch_size=2, num_channels=3, num_out_channels=3, embed_dim=8,
        depths=[2, 1, 2], num_heads=[2, 2, 4], skip_connections=[1, 1, 0], window_size=4,
        mlp_ratio=4.0, use_conditioning=True, drop_path_rate=0.0, residual_model="convnext"),
        seed=1)
    # Without time conditioning every norm is a plain LayerNorm (a second name mapping).
    (HERE / "plain").mkdir(exist_ok=True)
    write_reference(HERE / "plain", ScOTConfig(
        image_size=16, patch_size=2, num_channels=2, num_out_channels=1, embed_dim=8,
        depths=[1, 1], num_heads=[2, 2], skip_connections=[1, 0], window_size=4,
        mlp_ratio=2.0, use_conditioning=False, drop_path_rate=0.0, residual_model="convnext"),
        seed=3)
    # A few tensors in torch's own zip format (a transposed view, a parameter, integers)
    # for the torch-free reader of pytorch_model.bin files.
    base = torch.arange(6.0).reshape(2, 3)
    torch.save({"matrix": base, "transposed": base.t(), "param": torch.nn.Parameter(base[1]),
                "index": torch.tensor([3, 1, 2])}, HERE / "tiny_state.bin")


if __name__ == "__main__":
    main()
