"""User code named by a config or recipe: ``imports: [my_package.operators, ./my_ops.py]``.

Importing a module runs its ``@register("my_op")`` (models), ``@register_loss("my_loss")``
and ``@register_family`` (PDE families) decorators, so the names become usable in the same
file. An entry is a dotted module name (found on ``sys.path``, e.g. an installed package)
or a path to a ``.py`` file; a relative path is taken from the folder of the config that
names it, and :func:`resolve` stores it absolute, so a run directory or dataset that
records the imports can import them again from anywhere.

>>> resolve(["json", "ops.py"], base="/configs")
('json', '/configs/ops.py')
>>> import_modules(["json"], where="demo.yaml")
>>> import_modules(["no_such_module_xyz"], where="demo.yaml")
Traceback (most recent call last):
...
nopx.errors.UserError: demo.yaml: imports: cannot import 'no_such_module_xyz' (ModuleNotFoundError: No module named 'no_such_module_xyz'); check the name, or give a path to a .py file
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pathlib
import sys
from collections.abc import Sequence

from nopx.errors import UserError


def _is_path(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or "\\" in entry


def resolve(entries: Sequence[str], *, base: str | pathlib.Path) -> tuple[str, ...]:
    """Entries with file paths made absolute against ``base`` (module names unchanged)."""
    return tuple(str(pathlib.Path(base, entry).resolve()) if _is_path(entry) and
                 not pathlib.Path(entry).is_absolute() else entry for entry in entries)


def import_modules(entries: Sequence[str], *, where: str) -> None:
    """Import each entry once; a failing import is a :class:`UserError` naming it."""
    for entry in entries:
        try:
            if _is_path(entry):
                _import_file(pathlib.Path(entry))
            else:
                importlib.import_module(entry)
        except UserError:
            raise
        except Exception as err:  # user code may fail in any way: report it, do not crash
            hint = ("check the path" if _is_path(entry)
                    else "check the name, or give a path to a .py file")
            raise UserError(f"{where}: imports: cannot import {entry!r} "
                            f"({type(err).__name__}: {err}); {hint}") from None


def _import_file(path: pathlib.Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"no such file {path}")
    # One module per file, named after its absolute path: importing it twice is a no-op.
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"nopx_user_{path.stem}_{digest}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
