"""Datagen recipes: the shipped example, overrides, every kind of mistake."""

import pathlib

import pytest
import yaml

from nopx.datagen import DarcyConfig, Recipe, load_recipe, recipe_from_mapping
from nopx.datagen.recipe import differing_keys
from nopx.errors import UserError

EXAMPLES = pathlib.Path(__file__).parent.parent / "experiments" / "datagen"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_parse(path):
    recipe = load_recipe(path)
    assert recipe.family().grid.n == recipe.grid.n


def test_example_recipe_and_overrides():
    recipe = load_recipe(EXAMPLES / "darcy_pwc.yaml", ["samples=10", "grid.n=32", "out=x.h5", "darcy.high=20"])
    assert isinstance(recipe, Recipe)
    assert (recipe.samples, recipe.grid.n, recipe.out, recipe.seed) == (10, 32, "x.h5", 0)
    assert recipe.physics == DarcyConfig(high=20.0)
    assert recipe.solver.rtol == 1e-8 and recipe.storage.dtype == "float32"


def test_yaml_round_trip():
    recipe = load_recipe(EXAMPLES / "darcy_pwc.yaml", ["solver.rtol=1e-9"])
    text = recipe.to_yaml()
    assert list(yaml.safe_load(text))[:7] == ["pde", "seed", "samples", "first_index", "out", "grid", "darcy"]
    assert recipe_from_mapping(yaml.safe_load(text), where="again") == recipe


BASE = {"pde": "darcy", "samples": 4, "out": "x.h5"}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"pde": "dacry"}, r"r\.yaml: pde: unknown PDE family 'dacry'; did you mean 'darcy'"),
        ({"pde": None}, r"r\.yaml: 'pde' must name a PDE family"),
        ({"sampels": 3}, r"unknown key 'sampels'; did you mean 'samples'"),
        ({"darcy": {"hihg": 3}}, r"unknown key 'darcy\.hihg'; did you mean 'high'"),
        ({"darcy": {"low": -1}}, r"r\.yaml: darcy\.low: the coefficient must be positive"),
        ({"darcy": {"coefficient": "lognormall"}}, r"darcy\.coefficient: 'lognormall' is not one of"),
        ({"grid": {"n": 2}}, r"r\.yaml: grid\.n: need at least 4 cells"),
        ({"grid": {"n": 8, "subsample": 8}}, r"grid\.subsample: must be in \[1, n\)"),
        ({"samples": -1}, r"r\.yaml: samples: must be positive"),
        ({"seed": -2}, r"seed: must be a non-negative"),
        ({"solver": {"method": "lu"}}, r"r\.yaml: solver\.method: unknown solver 'lu'"),
        ({"solver": {"options": {"bogus": 1}}}, r"r\.yaml: solver\.options: .*bogus"),
        ({"solver": {"rtol": 2.0}}, r"solver\.rtol: must be in \(0, 1\)"),
        ({"storage": {"dtype": "float16"}}, r"storage\.dtype: 'float16' is not one of"),
        ({"physics": {}}, r"unknown key 'physics'; put the PDE parameters in the section named .* 'darcy:'"),
        ({"helmholtz": {}}, r"unknown key 'helmholtz'"),
    ],
)
def test_mistakes_are_user_errors_naming_the_key(change, message):
    with pytest.raises(UserError, match=message):
        recipe_from_mapping({**BASE, **change}, where="r.yaml")


def test_missing_required_key():
    with pytest.raises(UserError, match="r.yaml: missing required key 'out'"):
        recipe_from_mapping({"pde": "darcy", "samples": 4}, where="r.yaml")


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(UserError, match="nope.yaml"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="--set"):
        load_recipe(EXAMPLES / "darcy_pwc.yaml", ["samples"])


def test_differing_keys():
    assert differing_keys({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 0}) == ["a.c", "d"]
    assert differing_keys({"a": 1}, {"a": 1}) == []
