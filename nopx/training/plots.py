"""PNG figures for ``nopx eval --plot``: sample panels, error per step, snapshots, spectra.

Fields are channels-last: one sample ``(*spatial, C)``; for trajectories the channels are
the predicted time steps. 3-D samples are shown by their middle slice.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plane(field: np.ndarray) -> np.ndarray:
    """A 2-D view of one channel-free field (middle slices of extra axes)."""
    while field.ndim > 2:
        field = field[..., field.shape[-1] // 2]
    return field


def _show(fig, ax, field: np.ndarray, name: str, cmap: str = "viridis") -> None:
    if field.ndim == 1:
        ax.plot(field)
    else:
        image = ax.imshow(field.T, origin="lower", cmap=cmap)
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(name)


def sample_panels(x: np.ndarray, y: np.ndarray, pred: np.ndarray, png: pathlib.Path,
                  title: str) -> pathlib.Path:
    """Input (first channel), target, prediction and |error| of one sample."""
    plt = _pyplot()
    panels = {"input": _plane(x[..., 0]), "target": _plane(y[..., 0]),
              "prediction": _plane(pred[..., 0]), "|error|": _plane(np.abs(pred - y)[..., 0])}
    fig, axes = plt.subplots(1, 4, figsize=(16, 4), constrained_layout=True)
    for ax, (name, field) in zip(axes, panels.items()):
        _show(fig, ax, field, name, "magma" if name == "|error|" else "viridis")
    fig.suptitle(title)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def error_per_step(errors: Sequence[float], png: pathlib.Path, title: str) -> pathlib.Path:
    """Relative L2 error against the predicted time step."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot(np.arange(1, len(errors) + 1), errors, marker="o")
    ax.set_xlabel("predicted step")
    ax.set_ylabel("relative L2 error")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def trajectory_snapshots(y: np.ndarray, pred: np.ndarray, png: pathlib.Path, title: str,
                         count: int = 4) -> pathlib.Path:
    """Truth, prediction and |error| at ``count`` evenly spaced predicted steps."""
    plt = _pyplot()
    steps = np.linspace(0, y.shape[-1] - 1, min(count, y.shape[-1])).astype(int)
    fig, axes = plt.subplots(3, len(steps), figsize=(4 * len(steps), 11), constrained_layout=True,
                             squeeze=False)
    for column, step in enumerate(steps):
        rows = {"truth": y[..., step], "prediction": pred[..., step],
                "|error|": np.abs(pred[..., step] - y[..., step])}
        for row, (name, field) in enumerate(rows.items()):
            _show(fig, axes[row, column], _plane(field), f"{name}, step {step + 1}",
                  "magma" if name == "|error|" else "RdBu_r")
    fig.suptitle(title)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png


def radial_spectrum(field: np.ndarray) -> np.ndarray:
    """Shell-summed power spectrum ``E(k)``, ``k = 0..n/2``, of a periodic 2-D field.

    >>> n = 32
    >>> x = np.arange(n) / n
    >>> spectrum = radial_spectrum(np.sin(2 * np.pi * 3 * x)[:, None] * np.ones((1, n)))
    >>> int(np.argmax(spectrum))
    3
    """
    n = field.shape[0]
    power = np.abs(np.fft.fft2(field) / field.size) ** 2
    k = np.fft.fftfreq(n, 1.0 / n)
    shells = np.rint(np.hypot(*np.meshgrid(k, k, indexing="ij"))).astype(int)
    return np.bincount(shells.ravel(), power.ravel())[: n // 2 + 1]


def energy_spectra(y: np.ndarray, pred: np.ndarray, png: pathlib.Path, title: str) -> pathlib.Path:
    """Radial spectra of truth and prediction at the first and last predicted steps."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), constrained_layout=True)
    for step, style in ((0, "-"), (y.shape[-1] - 1, "--")):
        for field, name, color in ((y, "truth", "k"), (pred, "prediction", "tab:red")):
            spectrum = radial_spectrum(field[..., step])
            ax.loglog(np.arange(1, len(spectrum)), spectrum[1:], style, color=color,
                      label=f"{name}, step {step + 1}")
    ax.set_xlabel("wavenumber |k|")
    ax.set_ylabel("spectrum of the field")
    ax.legend()
    ax.set_title(title)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
