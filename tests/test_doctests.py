"""Run the docstring examples of every module in nopx, nopx.models and nopx.datagen.

Modules are imported by their package names (``nopx.models.fno``), never as top-level
``models.*``: collecting doctests by file path would import the folders twice.
"""

import doctest
import importlib
import pkgutil

import pytest

import nopx

PACKAGES = ["nopx", "nopx.models", "nopx.datagen"]
SKIP = {"nopx.__main__"}


def _modules() -> list[str]:
    names = set(PACKAGES)
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.update(info.name for info in
                     pkgutil.walk_packages(package.__path__, prefix=package_name + "."))
    return sorted(names - SKIP)


@pytest.mark.parametrize("module_name", _modules())
def test_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {module_name}"


def test_version_is_a_string() -> None:
    assert isinstance(nopx.__version__, str)
