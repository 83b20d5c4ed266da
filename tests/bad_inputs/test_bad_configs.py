"""The bad-config corpus: every file in ``configs/`` is refused with exit 2 and a message.

Each file starts with ``# <what is wrong>`` and ``# expect: <text the message must hold>``;
``@DATA@`` stands for a real 80-sample Darcy dataset (32x32), ``@RUN@`` for a fresh run
directory and ``@TMP@`` for the test's temporary folder. The files go through the real
command line parser in-process (fast); a few also through the installed ``nopx`` command.
Then the config loader is fuzzed: whatever the YAML, it returns a config or a user error.
"""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import run_nopx
from nopx import cli, config
from nopx.errors import UserError

CORPUS = sorted((pathlib.Path(__file__).parent / "configs").glob("*.yaml"))


def _instantiate(source: pathlib.Path, tmp_path: pathlib.Path, data: pathlib.Path) -> tuple[pathlib.Path, str]:
    text = source.read_text()
    expect = next(line.split("# expect: ", 1)[1] for line in text.splitlines()
                  if line.startswith("# expect: "))
    text = (text.replace("@DATA@", str(data)).replace("@RUN@", str(tmp_path / "run"))
            .replace("@TMP@", str(tmp_path)))
    path = tmp_path / source.name
    path.write_text(text)
    return path, expect


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 50


@pytest.mark.parametrize("source", CORPUS, ids=[p.stem for p in CORPUS])
def test_bad_config_exits_2_with_a_message(source, tmp_path, darcy_small, capsys):
    path, expect = _instantiate(source, tmp_path, darcy_small)
    status = cli.main(["train", "--config", str(path)])
    err = capsys.readouterr().err
    assert status == 2, err
    assert expect in err, err
    assert str(path) in err or "run bad" in err or str(darcy_small) in err or str(tmp_path) in err
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("name", ["01_unknown_top_key", "54_yaml_syntax_error"])
def test_bad_config_through_the_installed_command(name, tmp_path, darcy_small):
    path, expect = _instantiate(CORPUS[[p.stem for p in CORPUS].index(name)], tmp_path, darcy_small)
    result = run_nopx("train", "--config", str(path))
    assert result.returncode == 2 and expect in result.stderr
    assert "Traceback" not in result.stderr


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                     st.floats(allow_nan=True), st.text(max_size=12))
_keys = st.sampled_from(["name", "data", "model", "optim", "train", "checkpoint", "mesh", "loss",
                         "stages", "path", "n_train", "n_test", "n_val", "lr", "epochs",
                         "best_metric", "time", "input", "schedule", "seed", "x"])
_trees = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=6)), max_leaves=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=st.dictionaries(_keys, _trees, max_size=8))
def test_fuzzed_configs_parse_or_raise_a_user_error(tree):
    try:
        config.from_mapping(tree, where="fuzz.yaml")
    except UserError as err:
        assert str(err).startswith("fuzz.yaml")


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_fuzzed_yaml_text_reads_or_raises_a_user_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "config.yaml"
    path.write_text(text)
    try:
        config.load(path)
    except UserError as err:
        assert str(path) in str(err)
