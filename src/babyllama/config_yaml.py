"""The generic half of the configuration: YAML files, dotted ``--set`` overrides, and typed
dataclasses built from plain data (unknown keys named with the nearest valid one, values checked
against the field types), written back as YAML and hashed.

The stage and experiment dataclasses themselves live in :mod:`babyllama.config`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, refusing a missing, empty or malformed file in one line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: malformed YAML{where}: {problem}") from None
    if data is None:
        raise UserError(f"{path}: the config file is empty")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of ``data`` with ``key.sub=value`` overrides applied (values parsed as YAML)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected KEY.SUB=VALUE")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            raise UserError(f"--set {item!r}: the value is not valid YAML") from None
        value = _number_or_same(value)
        parts = key.strip().split(".")
        if not all(parts):
            raise UserError(f"--set {item!r}: empty key segment")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"--set {key}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def from_dict(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from ``data``, checking keys and types recursively."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise UserError(f"{where}: unknown key {key!r}{suggest(str(key), names)}")
    values = {key: _coerce(hints[key], value, f"{where}.{key}") for key, value in data.items()}
    return cls(**values)


def to_dict(obj: Any) -> Any:
    """Plain-data copy of a config (dataclasses -> dicts) for YAML/JSON output."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def dump_yaml(obj: Any) -> str:
    """YAML text of a config, keys in declaration order."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


def config_hash(obj: Any) -> str:
    """Stable short hash of a config, used to decide whether a finished stage can be reused."""
    text = json.dumps(to_dict(obj), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, {} if value is None else value, where)
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"{where}: expected a list, got {value!r}")
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 7e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise UserError(f"{where}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config type {tp} at {where}")


def _number_or_same(value: Any) -> Any:
    """YAML 1.1 reads ``2e-3`` (no dot) as a string: turn such strings into floats."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def check_value(ok: bool, where: str, key: str, value: Any, expected: str) -> None:
    """Refuse ``where.key = value`` unless ``ok``, naming what was expected."""
    if not ok:
        raise UserError(f"{where}.{key}: got {value!r}, expected {expected}")


def suggest(name: str, options: Any) -> str:
    """`` (did you mean 'x'?)`` for the option nearest to ``name``, or an empty string."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
