"""The recipe file: parsed with yaml.safe_load and validated in full before anything runs.

```yaml
model: {arch: lenet5}            # a zoo name, or {file: lenet5.pt} written by `slimkit train`
data: {name: mnist5k, batch_size: 128, calib_size: 512, limit: null}
train: {epochs: 5, lr: 0.05}     # trains `arch` first when no file is given
steps:                           # a registered method's name, finetune, export
  - l1_filter: {ratio: 0.5, finetune_epochs: 1}
  - ptq: {weight_bits: 8, act_bits: 8, observer: kl}
  - export: {format: int8}
report: {weights: {r_A: 2, r_p: 1, r_T: 1}}
```

Every key of every section is checked (unknown keys refused, types and ranges validated), a
`model.file` must load, and the chain of steps must be possible: each step accepts the kind
of model the previous one produced (see `slimkit.recipes.steps`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from slimkit.errors import UserError
from slimkit.recipes.steps import STEPS

_TOP = {"model", "data", "train", "steps", "report"}
_DATA = {"name": "mnist5k", "root": None, "batch_size": 128, "calib_size": 512, "limit": None}
_TRAIN = {"epochs": 5, "lr": 0.05}


@dataclass(frozen=True)
class Recipe:
    arch: str | None
    model_file: str | None
    data: Mapping[str, Any]
    train: Mapping[str, Any]
    steps: tuple[tuple[str, Any], ...]          # (step name, validated config)
    weights: Mapping[str, float] | None = None
    source: Mapping[str, Any] = field(default_factory=dict, compare=False)
    kinds: tuple[str, ...] = ()                 # the model kind after each step


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    return parse_recipe(raw, source=str(path))


def _mapping(raw: Any, key: str, source: str) -> dict:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{source}: '{key}' must be a mapping, got {type(value).__name__}")
    return value


def _known(given: Mapping, known: Mapping | set, what: str, source: str) -> None:
    bad = sorted(set(given) - set(known))
    if bad:
        raise UserError(f"{source}: unknown {what} key(s) {bad}; known: {sorted(known)}")


def _int(value: Any, where: str, low: int, none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"{where} must be an integer >= {low}"
                        f"{' or null' if none_ok else ''}, got {value!r}")


def _model(raw: dict, source: str) -> tuple[str | None, str | None]:
    from slimkit import zoo

    model = _mapping(raw, "model", source)
    _known(model, {"arch", "file"}, "model", source)
    arch, model_file = model.get("arch"), model.get("file")
    if (arch is None) == (model_file is None):
        raise UserError(f"{source}: model needs exactly one of 'arch' (zoo name) or 'file'")
    if arch is not None and arch not in zoo.names():
        raise UserError(f"{source}: unknown arch {arch!r}; zoo: {', '.join(zoo.names())}")
    if model_file is not None:
        if not isinstance(model_file, str) or not Path(model_file).is_file():
            raise UserError(f"{source}: model file not found: {model_file}")
        from slimkit.train import load_model

        try:
            load_model(model_file)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise UserError(f"{source}: model.file {model_file} is not a loadable slimkit "
                            f"model file: {exc}") from None
    return arch, model_file


def _data(raw: dict, source: str) -> dict:
    from slimkit import data as data_mod

    given = _mapping(raw, "data", source)
    _known(given, _DATA, "data", source)
    data = {**_DATA, **given}
    if data["name"] not in data_mod.names():
        raise UserError(f"{source}: unknown data set {data['name']!r}; "
                        f"known: {', '.join(data_mod.names())}")
    if data["root"] is not None and not isinstance(data["root"], str):
        raise UserError(f"{source}: data.root must be a folder path, got {data['root']!r}")
    _int(data["batch_size"], f"{source}: data.batch_size", 1)
    _int(data["calib_size"], f"{source}: data.calib_size", 1)
    _int(data["limit"], f"{source}: data.limit", 1, none_ok=True)
    return data


def _train(raw: dict, source: str) -> dict:
    given = _mapping(raw, "train", source)
    _known(given, _TRAIN, "train", source)
    train = {**_TRAIN, **given}
    _int(train["epochs"], f"{source}: train.epochs", 1)
    lr = train["lr"]
    if isinstance(lr, str):
        try:
            lr = float(lr)
        except ValueError:
            pass
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise UserError(f"{source}: train.lr must be a number > 0, got {train['lr']!r}")
    train["lr"] = float(lr)
    return train


def parse_recipe(raw: Any, source: str = "recipe") -> Recipe:
    """Validate a recipe mapping: every key, name, type and step config, and the chain."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: a recipe is a mapping with keys {sorted(_TOP)}")
    _known(raw, _TOP, "top-level", source)
    arch, model_file = _model(raw, source)
    data = _data(raw, source)
    train = _train(raw, source)
    steps_raw = raw.get("steps") or []
    if not isinstance(steps_raw, list) or not steps_raw:
        raise UserError(f"{source}: 'steps' must be a non-empty list of {{step: params}}")
    steps, kinds, kind = [], [], "float"
    for i, item in enumerate(steps_raw, 1):
        if not isinstance(item, dict) or len(item) != 1:
            raise UserError(f"{source}: step {i} must be one mapping like {{l1_filter: {{...}}}}")
        (name, params), = item.items()
        step = STEPS.get(name)  # KeyError lists the known steps
        try:
            cfg = step.config(params or {})
        except UserError as exc:
            raise UserError(f"{source}: step {i}: {exc}") from None
        step.check(cfg, f"{source}: step {i}")
        accepts = step.accepts(cfg)
        if kind not in accepts:
            prev = steps[-1][0] if steps else "the start"
            raise UserError(f"{source}: step {i} ({name}) cannot follow {prev}: it takes "
                            f"{' or '.join(accepts)} models, and the model is {kind} there")
        kind = step.produces(cfg, kind)
        steps.append((name, cfg))
        kinds.append(kind)
    report = _mapping(raw, "report", source)
    _known(report, {"weights"}, "report", source)
    weights = report.get("weights")
    if weights is not None:
        from slimkit.metrics import Ratios, composite

        try:
            composite(Ratios(1, 1, 1, 1, 1, 1), weights)  # validates names and values
        except (ValueError, TypeError) as exc:
            raise UserError(f"{source}: report.weights: {exc}") from None
    return Recipe(arch, model_file, data, train, tuple(steps), weights, raw, tuple(kinds))
