"""Shared test helpers: run the real ``nopx`` command in a subprocess."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

NOPX = str(pathlib.Path(sys.executable).with_name("nopx"))


def run_nopx(*args: str, cwd: pathlib.Path | str | None = None, timeout: float = 600,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``nopx ARGS`` (the installed console script of this interpreter)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([NOPX, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
