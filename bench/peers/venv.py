"""Virtual environments for the peers, created on first use under ``bench/`` (git-ignored).

A peer runs in its own environment so that its pins (torch, neuraloperator) never touch
nopx's. Packages install in the listed order, each under a constraint file holding the pins
installed before it: ``torch==2.13.0`` first resolves to the CPU wheel, and nothing after
it may swap it for a multi-GB CUDA build.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent

#: The neuraloperator peer: its driver imports torch and neuralop only.
NEURALOP = ("neuralop", BENCH / ".peer-venv", ("torch==2.13.0", "neuraloperator==2.0.0"))

_PROBE = ("import json, sys; from importlib.metadata import version; "
          "print(json.dumps({n: version(n) for n in sys.argv[1:]}))")


def _installed(python: Path, pins: tuple[str, ...]) -> dict[str, str] | None:
    if not python.exists():
        return None
    names = [pin.split("==")[0] for pin in pins]
    proc = subprocess.run([str(python), "-c", _PROBE, *names], capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def _matches(versions: dict[str, str] | None, pins: tuple[str, ...]) -> bool:
    return versions is not None and all(
        versions[name].split("+")[0] == wanted
        for name, wanted in (pin.split("==") for pin in pins))


def ensure(spec: tuple[str, Path, tuple[str, ...]]) -> tuple[Path, dict[str, str]]:
    """The environment's python and its pinned packages' versions, building it if needed."""
    label, venv, pins = spec
    python = venv / "bin" / "python"
    versions = _installed(python, pins)
    if _matches(versions, pins):
        return python, versions
    print(f"[{label}] creating {venv} with {' '.join(pins)}", file=sys.stderr, flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    constraints = venv / "constraints.txt"
    for i, pin in enumerate(pins):
        constraints.write_text("".join(p + "\n" for p in pins[:i]))
        subprocess.run([str(python), "-m", "pip", "install", "-qq", "-c", str(constraints), pin],
                       check=True)
    versions = _installed(python, pins)
    if not _matches(versions, pins):
        raise SystemExit(f"{venv}: expected {pins}, found {versions}; delete the folder and rerun")
    return python, versions
