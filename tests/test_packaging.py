"""The distribution lists every sub-package, and the CLI answers without importing JAX."""

import pathlib
import subprocess
import sys
import tomllib

from helpers import run_nopx

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed() -> None:
    setuptools = _pyproject()["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    for name, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            dotted = ".".join((name, *relative.parts))
            assert dotted in listed, f"{init.parent} has __init__.py but {dotted} is not in " \
                                     "[tool.setuptools] packages of pyproject.toml"


def test_models_and_datagen_are_not_top_level_names() -> None:
    package_dir = _pyproject()["tool"]["setuptools"]["package-dir"]
    assert package_dir == {"nopx": "nopx", "nopx.models": "models", "nopx.datagen": "datagen"}


def test_help_does_not_import_jax() -> None:
    code = "import sys; from nopx.cli import build_parser; build_parser(); " \
           "print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    help_text = run_nopx("--help")
    assert help_text.returncode == 0, help_text.stderr
    for command in ("train", "eval", "datagen", "info"):
        assert command in help_text.stdout
