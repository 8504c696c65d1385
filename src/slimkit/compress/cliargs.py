"""Config dataclass <-> argparse flags: every field becomes `--field-name` (nested configs
`--base.field-name`), typed, with the dataclass default and the field's doc as help.

Scalars take one value; homogeneous tuples take several (`--include conv1 'fc*'`); booleans
are `--flag / --no-flag`; anything richer (mappings, pairs) takes inline YAML
(`--layer-bits '{"fc*": [4, 8]}'`). Only the flags given are set; the rest keep the config's
defaults, so CLI, YAML and Python share one source of defaults and one validation.

>>> import argparse
>>> from slimkit.compress.methods.pruning import L1FilterConfig
>>> p = argparse.ArgumentParser()
>>> add_config_args(p, L1FilterConfig)
>>> config_from_args(L1FilterConfig, p.parse_args(["--ratio", "0.3", "--exclude", "fc"]))
L1FilterConfig(include=('*',), exclude=('fc',), ratio=0.3, target='sparsity', finetune_epochs=0, lr=0.01, round_to=1, importance='l1', iterative=False, steps=3, train_epochs=1, calib_batches=4)
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import re
import typing
from typing import Any

import yaml

from slimkit.compress.serial import _union_args, config_from_dict, field_types
from slimkit.errors import UserError

__all__ = ["add_config_args", "config_from_args", "field_help", "flag_name"]

_SCALARS = (int, float, str)


def flag_name(name: str, prefix: str = "") -> str:
    return "--" + prefix + name.replace("_", "-")


def _dest(name: str, prefix: str) -> str:
    return "cfg__" + (prefix.replace(".", "__") + name)


@functools.cache
def field_help(cls: type) -> dict[str, str]:
    """{field: help}: the `# comment` after the field in the source, else the sentence of
    the class docstring (or a base class's) that names the field."""
    out: dict[str, str] = {}
    for klass in cls.__mro__:
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            src = ""
        for line in src.splitlines():
            m = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+)$", line)
            if m and m.group(1) not in out:
                out[m.group(1)] = m.group(2).strip()
        doc = inspect.getdoc(klass) or ""
        flat = " ".join(doc.split())
        for f in dataclasses.fields(klass):
            if f.name in out:
                continue
            m = re.search(r"(?:^|[\s(`;])`?" + re.escape(f.name) + r"`?(?: / [\w`]+)*\s*[:=]\s*"
                          r"([^;]+?)(?:;|\.\s|$)", flat)
            if m:
                out[f.name] = m.group(1).strip()
            elif re.search(r"\b" + re.escape(f.name) + r"\b", flat):
                sent = [s for s in re.split(r"(?<=[.;])\s", flat)
                        if re.search(r"\b" + re.escape(f.name) + r"\b", s)]
                out[f.name] = sent[0].strip() if sent else ""
    return out


def _scalar(tp: Any) -> type | None:
    if tp in _SCALARS:
        return tp
    union = _union_args(tp)
    if union is not None:
        rest = [a for a in union if a is not type(None)]
        if len(rest) == 1 and rest[0] in _SCALARS:
            return rest[0]
    return None


def _optional(tp: Any) -> bool:
    union = _union_args(tp)
    return union is not None and type(None) in union


def _homogeneous(tp: Any) -> type | None:
    """The item type of `tuple[X, ...]` (X a scalar), else None."""
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis and args[0] in _SCALARS:
            return args[0]
    union = _union_args(tp)
    if union is not None:
        tups = [_homogeneous(a) for a in union if typing.get_origin(a) is tuple]
        scal = [a for a in union if a in _SCALARS]
        if len(tups) == 1 and tups[0] is not None and all(s is tups[0] for s in scal):
            return tups[0]
    return None


def _none_or(kind: type):
    def parse(text: str):
        if text.lower() in ("none", "null"):
            return None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__} or none, got {text!r}")
    parse.__name__ = kind.__name__
    return parse


def _yaml(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"not valid inline YAML: {exc}") from None


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return repr(f.default_factory())
    return "required"


def add_config_args(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """Add one flag per field of the dataclass `cls` (recursing into nested configs)."""
    helps = field_help(cls)
    types_ = field_types(cls)
    group = parser.add_argument_group(f"{cls.__name__} options") if not prefix else parser
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = types_[f.name]
        flag = flag_name(f.name, prefix)
        dest = _dest(f.name, prefix)
        text = f"{helps.get(f.name, '')} (default: {_default_text(f)})".strip()
        if dataclasses.is_dataclass(tp):
            add_config_args(parser, tp, prefix=f"{prefix}{f.name}.")
            continue
        common = dict(dest=dest, default=argparse.SUPPRESS, help=text)
        if tp is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif (kind := _scalar(tp)) is not None:
            parse = _none_or(kind) if _optional(tp) else kind
            group.add_argument(flag, type=parse, metavar=kind.__name__.upper(), **common)
        elif (item := _homogeneous(tp)) is not None:
            group.add_argument(flag, type=item, nargs="*", metavar=item.__name__.upper(),
                               **common)
        else:
            group.add_argument(flag, type=_yaml, metavar="YAML", **common)


def _collect(cls: type, args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    types_ = field_types(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = types_[f.name]
        if dataclasses.is_dataclass(tp):
            nested = _collect(tp, args, f"{prefix}{f.name}.")
            if nested:
                out[f.name] = nested
            continue
        dest = _dest(f.name, prefix)
        if hasattr(args, dest):
            value = getattr(args, dest)
            if isinstance(value, list) and len(value) == 1 and _union_args(tp) is not None \
                    and any(a in _SCALARS for a in _union_args(tp)):
                value = value[0]          # `str | tuple[str, ...]` given once: the scalar
            out[f.name] = value
    return out


def config_from_args(cls: type, args: argparse.Namespace, where: str = "flags") -> Any:
    """The config built from the flags `add_config_args` added (unset ones keep defaults)."""
    return config_from_dict(cls, _collect(cls, args), where)


def _literal(text: str) -> Any:  # kept small: inline values in help texts
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def config_error(exc: UserError) -> str:
    return str(exc)
