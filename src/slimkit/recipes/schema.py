"""The recipe file: parsed with yaml.safe_load and validated in full before anything runs.

```yaml
model: {arch: lenet5}            # a zoo name, or {file: lenet5.pt} written by `slimkit train`
data: {name: mnist5k, batch_size: 128, calib_size: 512}
train: {epochs: 5, lr: 0.05}     # trains `arch` first when no file is given
steps:
  - prune: {method: l1_filter, ratio: 0.5, finetune_epochs: 1}
  - quantize: {weight_bits: 8, act_bits: 8, observer: kl}
report: {weights: {r_A: 2, r_p: 1, r_T: 1}}
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from slimkit.errors import UserError
from slimkit.recipes.steps import STEPS

_TOP = {"model", "data", "train", "steps", "report"}


@dataclass(frozen=True)
class Recipe:
    arch: str | None
    model_file: str | None
    data: Mapping[str, Any]
    train: Mapping[str, Any]
    steps: tuple[tuple[str, Any], ...]          # (step name, validated config)
    weights: Mapping[str, float] | None = None
    source: Mapping[str, Any] = field(default_factory=dict, compare=False)


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
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise UserError(f"{source}: '{key}' must be a mapping, got {type(value).__name__}")
    return value


def parse_recipe(raw: Any, source: str = "recipe") -> Recipe:
    """Validate a recipe mapping: every key, name and step config, before any work."""
    from slimkit import data as data_mod
    from slimkit import zoo

    if not isinstance(raw, dict):
        raise UserError(f"{source}: a recipe is a mapping with keys {sorted(_TOP)}")
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise UserError(f"{source}: unknown key(s) {unknown}; known: {sorted(_TOP)}")
    model = _mapping(raw, "model", source)
    arch, model_file = model.get("arch"), model.get("file")
    if (arch is None) == (model_file is None):
        raise UserError(f"{source}: model needs exactly one of 'arch' (zoo name) or 'file'")
    if arch is not None and arch not in zoo.names():
        raise UserError(f"{source}: unknown arch {arch!r}; zoo: {', '.join(zoo.names())}")
    if model_file is not None and not Path(model_file).is_file():
        raise UserError(f"{source}: model file not found: {model_file}")
    data = {"name": "mnist5k", "root": None, "batch_size": 128, "calib_size": 512, "limit": None}
    given = _mapping(raw, "data", source)
    bad = sorted(set(given) - set(data))
    if bad:
        raise UserError(f"{source}: unknown data key(s) {bad}; known: {sorted(data)}")
    data.update(given)
    if data["name"] not in data_mod.names():
        raise UserError(f"{source}: unknown data set {data['name']!r}; "
                        f"known: {', '.join(data_mod.names())}")
    train = {"epochs": 5, "lr": 0.05}
    train.update(_mapping(raw, "train", source))
    steps_raw = raw.get("steps") or []
    if not isinstance(steps_raw, list) or not steps_raw:
        raise UserError(f"{source}: 'steps' must be a non-empty list of {{step: params}}")
    steps = []
    for i, item in enumerate(steps_raw):
        if not isinstance(item, dict) or len(item) != 1:
            raise UserError(f"{source}: step {i + 1} must be one mapping like {{prune: {{...}}}}")
        (name, params), = item.items()
        step = STEPS.get(name)  # KeyError lists the known steps
        steps.append((name, step.config(params or {})))
    report = _mapping(raw, "report", source)
    weights = report.get("weights")
    if weights is not None:
        from slimkit.metrics import Ratios, composite

        try:
            composite(Ratios(1, 1, 1, 1, 1, 1), weights)  # validates names and values
        except ValueError as exc:
            raise UserError(f"{source}: report.weights: {exc}") from None
    return Recipe(arch, model_file, data, train, tuple(steps), weights, raw)
