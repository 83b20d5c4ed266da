"""The nopx.datagen package: its public names, its layout, and what it must not import.

(Its docstring examples run in ``test_doctests.py`` with every other module's.)
"""

import subprocess
import sys

import nopx.datagen


def test_public_names_exist():
    for name in nopx.datagen.__all__:
        assert hasattr(nopx.datagen, name), name
    assert {"load_recipe", "generate", "open_dataset", "info", "merge"} <= set(nopx.datagen.__all__)


def test_import_is_light_and_one_way():
    code = ("import sys, nopx.datagen; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'optax', 'orbax') "
            "or m.startswith(('nopx.models', 'nopx.training', 'nopx.layers', 'nopx.losses'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
