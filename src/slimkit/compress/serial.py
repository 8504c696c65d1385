"""Method configs to and from plain dicts (YAML, JSON): the one conversion shared by recipes,
the CLI and files, so that they cannot disagree.

>>> from slimkit.compress.methods.pruning import L1FilterConfig
>>> d = config_to_dict(L1FilterConfig(ratio=0.3, exclude=("fc",)), defaults=False)
>>> d
{'exclude': ['fc'], 'ratio': 0.3}
>>> config_from_dict(L1FilterConfig, d) == L1FilterConfig(ratio=0.3, exclude=("fc",))
True
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any

from slimkit.errors import UserError

__all__ = ["config_to_dict", "config_from_dict", "field_types", "coerce"]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def config_to_dict(config: Any, defaults: bool = True) -> dict[str, Any]:
    """The config's fields as plain YAML-able values (tuples become lists); with
    `defaults=False` only the fields that differ from their defaults."""
    out = {}
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        value = getattr(config, f.name)
        if not defaults and _default(f) is not dataclasses.MISSING and value == _default(f):
            continue
        out[f.name] = _plain(value)
    return dict(sorted(out.items())) if not defaults else out


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """{field name: resolved type} of a dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def _union_args(tp: Any) -> tuple | None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return None


def coerce(tp: Any, value: Any, where: str) -> Any:
    """`value` from YAML/argparse shaped as the annotation `tp` wants (lists -> tuples,
    mappings -> nested configs, "1e-4" -> float); validation stays with the config."""
    if value is None:
        return None
    union = _union_args(tp)
    if union is not None:
        args = [a for a in union if a is not type(None)]
        if isinstance(value, (list, tuple)):
            for a in args:
                if typing.get_origin(a) is tuple:
                    return coerce(a, value, where)
        if isinstance(value, Mapping):
            for a in args:
                if dataclasses.is_dataclass(a):
                    return coerce(a, value, where)
        for a in args:
            if a in (float, int) and isinstance(value, str):
                try:
                    return coerce(a, value, where)
                except UserError:
                    continue
        return value
    if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
        return config_from_dict(tp, value, where)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(args[0], v, where) for v in value)
        if args and len(args) == len(value):
            return tuple(coerce(a, v, where) for a, v in zip(args, value))
        return tuple(value)
    if origin in (dict, Mapping, typing.Mapping) or tp in (dict,):
        if isinstance(value, Mapping) and len(args) == 2:
            return {k: coerce(args[1], v, where) for k, v in value.items()}
        return value
    if tp is float and isinstance(value, (str, int)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            raise UserError(f"{where}: {value!r} is not a number") from None
    if tp is int and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise UserError(f"{where}: {value!r} is not an integer") from None
    return value


def config_from_dict(cls: type, data: Mapping[str, Any] | None, where: str = "config") -> Any:
    """`cls(**data)` with unknown keys refused (naming the known ones), values coerced to the
    field types, and any validation error raised as a UserError naming `where`."""
    data = dict(data or {})
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of {cls.__name__} fields")
    types_ = field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {unknown} for {cls.__name__}; "
                        f"known: {sorted(types_)}")
    kwargs = {k: coerce(types_[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: {exc}") from None
