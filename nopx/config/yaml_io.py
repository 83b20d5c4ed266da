"""Reading config files: YAML with duplicate keys refused, and ``--set key.path=value``
overrides applied to the parsed mapping."""

from __future__ import annotations

import pathlib
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from nopx.errors import UserError


def read_yaml(path: str | pathlib.Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path``; a missing file or bad YAML is a :class:`UserError`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such config file; check the path (relative paths are "
                        f"taken from the current directory {pathlib.Path.cwd()})")
    try:
        data = yaml.load(path.read_text(), Loader=_StrictLoader)
    except _DuplicateKey as err:
        raise UserError(f"{path}: {err}; keep one (YAML would silently drop the first)") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({err}); fix the syntax at the line shown") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping of sections (key: value), "
                        f"found {type(data).__name__}")
    return data


class _DuplicateKey(yaml.YAMLError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key written twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise _DuplicateKey(f"key {key!r} appears twice (lines {seen[key]} and {line})")
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def apply_overrides(mapping: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``mapping`` with ``"a.b=value"`` overrides applied.

    Values are parsed as YAML scalars/flow collections (``lr=1e-3``, ``n_modes=[12,12]``),
    intermediate mappings are created as needed.

    >>> apply_overrides({"optim": {"lr": 1.0}}, ["optim.lr=0.5", "train.epochs=3"])
    {'optim': {'lr': 0.5}, 'train': {'epochs': 3}}
    """
    result = _deep_copy(mapping)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
            raise UserError(f"--set {item!r}: expected key.path=value, e.g. --set optim.lr=3e-4")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = result
        parts = key.strip().split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise UserError(f"--set {item!r}: '{where}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return result


def _deep_copy(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in mapping.items()}
