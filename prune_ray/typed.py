"""Typed mappings: a YAML mapping -> a frozen dataclass, every key and value checked against the
fields' types; a mismatch is one SpecError line naming where it is, what came and what is allowed."""

from __future__ import annotations

import dataclasses
import types
import typing


class SpecError(ValueError):
    """A sweep spec that cannot run; the one-line message names the bad value."""


def _type_name(tp: object) -> str:
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(value: object, tp: object, where: str) -> object:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _convert(value, arg, where)
            except SpecError:
                continue
        raise SpecError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{where}: expected a mapping, got {value!r}")
        key_type, value_type = typing.get_args(tp)
        return {_convert(k, key_type, f"{where} key"): _convert(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        items = value if isinstance(value, list) else [value]  # a scalar is a one-item list
        return tuple(_convert(item, typing.get_args(tp)[0], f"{where}[{i}]") for i, item in enumerate(items))
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    if tp is type(None) and value is None:
        return None
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise SpecError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def from_mapping(cls: type, data: object, where: str = "spec") -> object:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and values of the wrong type."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise SpecError(f"{where}: unknown key {key!r}; allowed: {', '.join(names)}")
    return cls(**{key: _convert(value, hints[key], f"{where}.{key}") for key, value in data.items()})
