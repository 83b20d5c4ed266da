"""Parsing a mapping into a dataclass by its type hints (keys and types checked, safe cases
converted), back to plain data, and the ``key: message`` check the dataclasses validate with."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from nopx.errors import UserError


def parse_dataclass(cls: type, mapping: Any, *, where: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``mapping``, checking keys and types recursively.

    Args:
      cls: a dataclass type whose fields carry type hints (nested dataclasses, ``int``,
        ``float``, ``str``, ``bool``, ``Literal[...]``, ``X | None``, ``tuple[X, ...]``,
        ``list[X]``, ``dict[str, Any]``).
      mapping: the parsed YAML for this section.
      where: the file name (or other origin) used in messages.
      prefix: the key path of this section, for messages.

    A ``ValueError("key: message")`` raised by the dataclass ``__post_init__`` becomes a
    :class:`UserError` naming ``where`` and the full key path.
    """
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise UserError(f"{where}: '{prefix.rstrip('.') or '(top level)'}' must be a section "
                        f"(a mapping of keys), got {mapping!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in mapping.items():
        if key not in fields:
            raise UserError(_unknown_key_message(where, prefix, str(key), list(fields)))
        kwargs[key] = _coerce(value, hints[key], where=where, key=prefix + key)
    for name, field in fields.items():
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        if required and name not in kwargs:
            raise UserError(f"{where}: missing required key '{prefix}{name}'; add it to the file")
    try:
        return cls(**kwargs)
    except ValueError as err:
        message = str(err)
        head, sep, tail = message.partition(": ")
        if sep and head in fields:
            raise UserError(f"{where}: {prefix}{head}: {tail}") from None
        raise UserError(f"{where}: {prefix.rstrip('.') or 'config'}: {message}") from None


def _unknown_key_message(where: str, prefix: str, key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{where}: unknown key '{prefix}{key}'{hint} (valid keys: {', '.join(valid)})"


def _coerce(value: Any, hint: Any, *, where: str, key: str) -> Any:
    """Check ``value`` against type ``hint``, converting the safe cases (int→float, str→float)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where=where, key=key)
            except UserError as err:
                errors.append(str(err))
        raise UserError(errors[-1])
    if dataclasses.is_dataclass(hint):
        return parse_dataclass(hint, value, where=where, prefix=key + ".")
    if origin is Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint_text = f"; did you mean '{close[0]}'?" if close else ""
            choices = ", ".join(repr(a) for a in args)
            raise UserError(f"{where}: {key}: {value!r} is not one of {choices}{hint_text}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: {key}: expected a list, got {value!r}")
        item_hint = args[0] if args else Any
        items = [_coerce(v, item_hint, where=where, key=f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise UserError(f"{where}: {key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{where}: {key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{where}: {key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "1e-3" as a string
            except ValueError:
                pass
        raise UserError(f"{where}: {key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise UserError(f"{where}: {key}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # a bug in nopx, not input


def to_dict(obj: Any) -> Any:
    """Turn a (nested) config dataclass into plain YAML-able data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ValueError(f"{key}: {message}")
