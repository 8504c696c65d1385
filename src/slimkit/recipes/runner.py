"""Run a validated recipe: build or load the model, apply each step, measure after each one,
and write the report beside the resolved recipe and library versions."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import platform
from pathlib import Path
from typing import Callable

import torch
import yaml

from slimkit.recipes.schema import Recipe
from slimkit.recipes.steps import STEPS, StepContext


def versions() -> dict[str, str]:
    import numpy
    import onnxruntime

    import slimkit

    return {"slimkit": slimkit.__version__, "torch": str(torch.__version__),
            "numpy": numpy.__version__, "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(), "machine": platform.machine()}


def _loaders(recipe: Recipe):
    from slimkit import data

    d = recipe.data
    train = data.load(d["name"], root=d["root"], split="train")
    test = data.load(d["name"], root=d["root"], split="test")
    if d["limit"]:
        train, test = data.subset(train, min(d["limit"], len(train))), \
            data.subset(test, min(d["limit"], len(test)))
    calib = data.subset(train, min(d["calib_size"], len(train)), seed=1)
    return (data.loader(train, batch_size=d["batch_size"], train=True),
            data.loader(test, batch_size=256),
            data.loader(calib, batch_size=64))


def _base_model(recipe: Recipe, train_loader, log):
    from slimkit import data, zoo
    from slimkit.train import fit, load_model

    if recipe.model_file:
        return load_model(recipe.model_file), recipe.model_file
    shape = data.input_shape(recipe.data["name"])
    model = zoo.create(recipe.arch, num_classes=data.num_classes(recipe.data["name"]),
                       in_channels=shape[0])
    log(f"training {recipe.arch} for {recipe.train['epochs']} epochs ...")
    fit(model, train_loader, epochs=int(recipe.train["epochs"]), lr=float(recipe.train["lr"]),
        progress=False)
    return model.eval(), recipe.arch


def run_recipe(recipe: Recipe, out: str | Path, log: Callable[[str], None] = print):
    """Apply the recipe's steps in order; returns the `Report` (also written into `out`).

    Each step is measured after it runs (the six ratios against the starting model); an
    `export` step writes its file and `<file>.ratios.json` beside it."""
    from slimkit import data
    from slimkit.deploy.onnx_export import export_onnx
    from slimkit.metrics import Report, measure
    from slimkit.metrics.latency import paired_latency
    from slimkit.pruning.keep import squash
    from slimkit.train import evaluate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    resolved = {"recipe": recipe.source, "versions": versions(),
                "steps": [{name: _plain(cfg)} for name, cfg in recipe.steps]}
    (out / "recipe.resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    train_loader, test_loader, calib_loader = _loaders(recipe)
    model, label = _base_model(recipe, train_loader, log)
    shape = data.input_shape(recipe.data["name"])
    ctx = StepContext(train_loader, calib_loader, torch.zeros(1, *shape), out,
                      original=copy.deepcopy(model).eval())
    report = Report(title=f"recipe on {label}", weights=recipe.weights)
    base = measure(model, shape, test_loader, evaluate)
    report.add(label, "original", base, baseline=base)
    chain, wbits, abits, sparse = [], 32, 32, False
    original_onnx = None  # the original as onnxruntime runs it, when a step deploys there
    for name, cfg in recipe.steps:
        step = STEPS.get(name)
        log(f"step {name}: {cfg}")
        ctx.previous = copy.deepcopy(model)
        model = step.apply(model, cfg, ctx)
        chain.append(name)
        wbits, abits = min(wbits, step.weight_bits(cfg)), min(abits, step.act_bits(cfg))
        sparse = sparse or step.sparse
        plain = squash(model)
        m = measure(plain, shape, test_loader, evaluate, weight_bits=wbits, act_bits=abits,
                    skip_zeros=sparse, latency=False)
        deployed = step.deploy(model, ctx)  # time what really runs, not a simulation of it
        reference = ctx.original
        if deployed is not None:  # onnxruntime: the original runs there too, in fp32
            if original_onnx is None:
                original_onnx = export_onnx(ctx.original, shape, out / "original-fp32.onnx")
            reference = str(original_onnx)
        # one protocol for r_T: pinned threads, interleaved rounds, paired median ratio
        _, lc, r_t = paired_latency(reference, deployed if deployed is not None else plain, shape)
        m = dataclasses.replace(m, latency_ms=lc.median_ms)
        if name == "export" and ctx.exported is not None:
            m = dataclasses.replace(m, param_bytes=ctx.exported.stat().st_size)
        report.add(label, " + ".join(chain), m, baseline=base, latency=r_t)
        if name == "export" and ctx.exported is not None:
            _write_ratios(ctx.exported, report.rows[-1])
    report.write(out)
    log(report.to_markdown())
    return report


def _write_ratios(path: Path, row) -> Path:
    """`<file>.ratios.json`: the six ratios of the exported model against the original."""
    ratios = dataclasses.asdict(row.ratios) if row.ratios is not None else {}
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in ratios.items() if k.startswith("r_")}
    side = path.with_name(path.name + ".ratios.json")
    side.write_text(json.dumps({"file": path.name, "size_bytes": path.stat().st_size,
                                "chain": row.method, "accuracy": row.measurement.accuracy,
                                "ratios": clean}, indent=2))
    return side


def _plain(cfg) -> dict:
    from slimkit.compress.serial import config_to_dict

    if dataclasses.is_dataclass(cfg):
        return config_to_dict(cfg)
    return {"value": str(cfg)}
