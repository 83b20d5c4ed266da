"""Limit the threads of the BLAS libraries loaded in this process (OpenBLAS, MKL).

The datagen engines are sparse: their dense BLAS calls are vector operations (dot products,
norms, axpy in CG and GMRES) on 10⁴-10⁶ entries, where waking a second BLAS thread costs more
than it saves, and a thread spinning on a core another worker needs costs far more: the
``amg`` engine ran 2.3x slower with OpenBLAS's default two threads than with one on a 2-core
machine. Environment variables (``OPENBLAS_NUM_THREADS``) only act on a library not loaded
yet, so a process that already imported numpy is limited through the libraries' own
``set_num_threads`` entry points, found among the shared objects this process has mapped.
Where none is found (another BLAS, another OS) nothing is done.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Generator

# (setter, getter) pairs by the names the libraries export (numpy/scipy wheels prefix theirs).
_ENTRY_POINTS = (
    ("openblas_set_num_threads", "openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("MKL_Set_Num_Threads", "MKL_Get_Max_Threads"),
)
_NAMES = ("openblas", "mkl_rt")


def _mapped_libraries() -> list[str]:
    """Paths of the BLAS shared objects mapped into this process (Linux: /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if ".so" in line}
    except OSError:
        return []
    return sorted(p for p in paths if any(name in p.rsplit("/", 1)[-1] for name in _NAMES))


@functools.cache
def _controls(paths: tuple[str, ...]) -> list[tuple[ctypes._CFuncPtr, ctypes._CFuncPtr]]:
    controls = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for setter, getter in _ENTRY_POINTS:
            if hasattr(lib, setter) and hasattr(lib, getter):
                controls.append((getattr(lib, setter), getattr(lib, getter)))
    return controls


@contextlib.contextmanager
def blas_threads(count: int) -> Generator[None, None, None]:
    """Run the body with every loaded OpenBLAS/MKL limited to ``count`` threads, then restore."""
    controls = _controls(tuple(_mapped_libraries()))
    before = [getter() for _, getter in controls]
    for setter, _ in controls:
        setter(ctypes.c_int(count))
    try:
        yield
    finally:
        for (setter, _), n in zip(controls, before, strict=True):
            setter(ctypes.c_int(n))
