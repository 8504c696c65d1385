"""`slimkit auto`: find the recipe that meets a target on a device, across families.

The search space is the survey's combinations: structured pruning (L1 filters, Li et al.
2017) at several ratios, low-rank factorisation of the fully connected layers (truncated SVD
at half their MACs), int8 post-training quantization run by onnxruntime's integer kernels,
and a distillation fine-tune from the original model (Hinton et al. 2015) after any change.
Every candidate *is* a recipe (``slimkit.recipes``): it is run by the same runner as
``slimkit run``, so the YAML saved for the chosen one reproduces it.

1. Predict each candidate's cost cheaply (latency from this host's lookup table,
   :mod:`slimkit.auto.lut`, scaled by the measured int8 speed-up for int8 candidates; size
   and MACs counted) and drop those that cannot meet the target.
2. Run the remaining candidates, fewest changes first, each cached in ``out/cache/<hash>``
   (the hash of its recipe), so an interrupted search resumes; under ``torchrun`` the ranks
   share the candidates (rank r takes every world-th one) and rank 0 gathers the cache.
3. Measure each deployed file against the original in interleaved rounds
   (:func:`slimkit.metrics.latency.compare_latency`) and keep those within ``max_drop``
   points of the original's accuracy; the chosen one is the most accurate that meets the
   target (ties: the fastest). Every evaluated candidate goes into the Pareto plot.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from slimkit.errors import UserError

__all__ = ["Target", "AutoConfig", "Candidate", "parse_target", "candidates", "search"]

log = logging.getLogger(__name__)
KINDS = ("latency", "size", "macs")


@dataclass(frozen=True)
class Target:
    """``kind`` in latency / size / macs, as a fraction of the original (``relative``) or an
    absolute value (ms, bytes, MACs)."""

    kind: str
    value: float
    relative: bool = True

    def describe(self) -> str:
        return f"{self.kind}={self.value:g}{'x' if self.relative else ''}"


_UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "k": 1e3, "m": 1e6, "g": 1e9, "ms": 1}


def parse_target(text: str) -> Target:
    """``latency=0.5x`` | ``size=200KB`` | ``size=0.25x`` | ``macs=10M`` | ``latency=2ms``."""
    m = re.fullmatch(r"\s*(latency|size|macs)\s*=\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text or "")
    if not m:
        raise UserError(f"--target must look like latency=0.5x, size=200KB or macs=0.5x, got {text!r}")
    kind, number, unit = m.group(1), float(m.group(2)), m.group(3).lower()
    if unit == "x":
        if not 0 < number < 1:
            raise UserError(f"--target {text}: a relative target must be in (0, 1), got {number}")
        return Target(kind, number, True)
    if unit not in _UNITS or (kind == "latency" and unit not in ("ms", "")) or number <= 0:
        raise UserError(f"--target {text}: unknown unit {unit!r} for {kind} (use x for a fraction of "
                        "the original; ms for latency; KB/MB for size; K/M/G for MACs)")
    return Target(kind, number * _UNITS[unit], False)


@dataclass(frozen=True)
class AutoConfig:
    """What to search: ``prune_ratios`` (0 = no pruning), whether to try low-rank fc layers and
    int8; ``finetune_epochs`` of distillation after any structural change; ``max_drop`` in
    top-1 points; ``max_candidates`` evaluated at most; ``limit`` caps each split of the data
    (a seeded subset) for fine-tuning and scoring."""

    target: Target
    max_drop: float = 1.0
    prune_ratios: tuple[float, ...] = (0.0, 0.25, 0.4, 0.5, 0.6, 0.75)
    lowrank: bool = True
    int8: bool = True
    finetune_epochs: int = 1
    finetune_lr: float = 0.01
    max_candidates: int = 12
    limit: int | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.max_drop, (int, float)) and 0 <= self.max_drop < 100):
            raise UserError(f"--max-drop must be in [0, 100) points, got {self.max_drop!r}")
        if not self.prune_ratios or any(not 0 <= r < 1 for r in self.prune_ratios):
            raise UserError(f"prune ratios must be in [0, 1), got {self.prune_ratios!r}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be positive, got {self.limit}")
        if self.finetune_epochs < 0 or self.max_candidates < 1:
            raise UserError("finetune_epochs must be >= 0 and max_candidates >= 1")


@dataclass
class Candidate:
    """One point of the search space and, once run, what it measured."""

    prune: float
    lowrank: bool
    int8: bool
    predicted: dict[str, float] = field(default_factory=dict)
    result: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        parts = ([f"l1_filter {self.prune:g}"] if self.prune else []) + (["svd fc"] if self.lowrank else []) \
            + (["int8"] if self.int8 else [])
        return " + ".join(parts) or "original (fp32 onnx)"

    def changes(self) -> int:
        return bool(self.prune) + self.lowrank + self.int8


def _fc_layers(model) -> list[str]:
    from torch import nn

    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return names[:-1]  # the classifier stays whole (Sainath et al. factor the last layer only
    # with care; here every fc layer but the last one is a candidate)


def recipe_for(c: Candidate, model_file: str, task: dict, cfg: AutoConfig, fc: Sequence[str]) -> dict:
    """The recipe (plain YAML data) that builds candidate ``c`` from ``model_file``."""
    steps: list[dict] = []
    if c.prune:
        steps.append({"l1_filter": {"ratio": c.prune}})
    if c.lowrank and fc:
        steps.append({"lowrank": {"method": "svd", "rank_selection": "macs", "budget": 0.5, "include": list(fc)}})
    if steps and cfg.finetune_epochs:
        steps.append({"distill": {"loss": "kd", "epochs": cfg.finetune_epochs, "lr": cfg.finetune_lr,
                                  "teacher": "original"}})
    if c.int8:
        steps.append({"ptq": {"weight_bits": 8, "act_bits": 8, "observer": "percentile"}})
        steps.append({"export": {"format": "int8", "file": "model-int8.onnx"}})
    else:
        steps.append({"export": {"format": "onnx", "file": "model.onnx"}})
    data = {"name": task["data"], "batch_size": 128}
    if task.get("root"):
        data["root"] = str(Path(task["root"]).resolve())
    if cfg.limit:
        data["limit"] = cfg.limit
    return {"model": {"file": str(Path(model_file).resolve())}, "data": data, "steps": steps}


def candidates(cfg: AutoConfig, has_fc: bool) -> list[Candidate]:
    out = []
    for r in cfg.prune_ratios:
        for lr in ((False, True) if cfg.lowrank and has_fc else (False,)):
            for q in ((False, True) if cfg.int8 else (False,)):
                out.append(Candidate(r, lr, q))
    return out


def _hash(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _predict(c: Candidate, model, shape, table, int8_speedup: float) -> dict[str, float]:
    """Cheap cost estimate: prune (no fine-tune), factor, count and look up latency."""
    import torch

    from slimkit.compress import compress
    from slimkit.metrics import count_macs, count_params

    m = model
    if c.prune:
        m = compress(m, _config("l1_filter", {"ratio": c.prune}), input_shape=shape).model
    if c.lowrank:
        fc = _fc_layers(m)
        if fc:
            m = compress(m, _config("lowrank", {"method": "svd", "rank_selection": "macs", "budget": 0.5,
                                                "include": fc}), input_shape=shape).model
    with torch.no_grad():
        ms = table.predict(m, shape).total_ms
    return {"latency": ms / (int8_speedup if c.int8 else 1.0),  # ms
            "size": float(count_params(m) * (1 if c.int8 else 4)),  # bytes
            "macs": float(count_macs(m, shape).total)}


def _config(step: str, params: dict):
    from slimkit.recipes.steps import STEPS

    return STEPS.get(step).config(params)


def _meets(value: float, target: Target, original: float) -> bool:
    limit = target.value * original if target.relative else target.value
    return value <= limit


def search(model_file: str | os.PathLike, task: dict, cfg: AutoConfig, out: str | os.PathLike,
           rank: int = 0, world: int = 1, barrier: Callable[[], None] = lambda: None,
           log_fn: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Run the search; rank 0 returns the summary (others None). See the module docstring."""
    import yaml

    from slimkit.auto.lut import LatencyTable
    from slimkit.deploy.onnx_export import export_onnx
    from slimkit.metrics.latency import compare_latency
    from slimkit.recipes.runner import run_recipe
    from slimkit.recipes.schema import parse_recipe
    from slimkit.train import load_model

    out = Path(out)
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    model = load_model(model_file).eval()
    shape = tuple(task["input_shape"])
    fc = _fc_layers(model)
    table = LatencyTable.for_host("onnxruntime", 1, 1, repeats=20)
    base_ms = table.predict(model, shape).total_ms
    original_onnx = out / "original.onnx"
    if rank == 0 and not original_onnx.exists():
        export_onnx(model, shape, original_onnx)
    barrier()

    # int8 speed-up of the original, measured once (scales the fp32 table for int8 candidates)
    int8_speedup = _int8_speedup(model, model_file, task, out, cfg, rank, barrier, original_onnx, shape)
    from slimkit.metrics import count_macs, count_params

    base = {"latency": base_ms, "size": float(count_params(model) * 4),
            "macs": float(count_macs(model, shape).total)}
    pool = candidates(cfg, bool(fc))
    feasible = []
    for c in pool:
        c.predicted = _predict(c, model, shape, table, int8_speedup)
        if _meets(c.predicted[cfg.target.kind], cfg.target, base[cfg.target.kind]):
            feasible.append(c)
    feasible.sort(key=lambda c: (c.changes(), c.prune))
    chosen_pool = feasible[: cfg.max_candidates]
    if rank == 0:
        log_fn(f"auto: {len(pool)} candidates, {len(feasible)} predicted to meet {cfg.target.describe()}; "
               f"running {len(chosen_pool)} (int8 speed-up of the original here: {int8_speedup:.2f}x)")
    for i, c in enumerate(chosen_pool):
        if i % world != rank:
            continue
        recipe = recipe_for(c, model_file, task, cfg, fc)
        key = _hash(recipe)
        done = cache / key / "result.json"
        if done.exists():
            continue
        work = cache / f"{key}.partial"
        shutil.rmtree(work, ignore_errors=True)
        log_fn(f"auto [{i + 1}/{len(chosen_pool)}] {c.label} ...")
        report = run_recipe(parse_recipe(copy.deepcopy(recipe), source=f"auto candidate {key}"), work,
                            log=lambda s: log_fn(f"    {s.splitlines()[0]}") if s.startswith("step") else None)
        exported = next(iter(sorted(work.glob("model*.onnx"))))
        (work / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
        (work / "result.json").write_text(json.dumps({
            "accuracy": report.rows[-1].measurement.accuracy, "file": exported.name, "recipe": recipe,
            "original_accuracy": report.rows[0].measurement.accuracy}))  # same data, same split
        os.replace(work, cache / key)  # the cached candidate appears whole or not at all
    barrier()
    if rank != 0:
        return None

    rows = []
    for c in chosen_pool:
        recipe = recipe_for(c, model_file, task, cfg, fc)
        key = _hash(recipe)
        res = json.loads((cache / key / "result.json").read_text())
        rows.append((c, key, res))
    files = [str(original_onnx)] + [str(cache / key / res["file"]) for _, key, res in rows]
    timing = compare_latency(files, shape)
    scored = [res["original_accuracy"] for _, _, res in rows if "original_accuracy" in res]
    base_acc = scored[0] if scored else _accuracy_of_original(model, task, cfg.limit)
    summary = []
    for j, (c, key, res) in enumerate(rows, 1):
        ratio = timing.ratio(j, 0)
        size = (cache / key / res["file"]).stat().st_size
        c.result = {"accuracy": res["accuracy"], "latency_ratio": ratio.value, "latency_stable": ratio.stable,
                    "size_bytes": size, "drop": 100 * (base_acc - res["accuracy"]), "key": key}
        summary.append(c)
    orig_size = original_onnx.stat().st_size

    def ok(c: Candidate) -> bool:
        r = c.result
        value = {"latency": r["latency_ratio"], "size": r["size_bytes"] / orig_size,
                 "macs": c.predicted["macs"] / base["macs"]}[cfg.target.kind]
        absolute = {"latency": r["latency_ratio"] * timing.latencies[0].median_ms,
                    "size": r["size_bytes"], "macs": c.predicted["macs"]}[cfg.target.kind]
        meets = value <= cfg.target.value if cfg.target.relative else absolute <= cfg.target.value
        return meets and r["drop"] <= cfg.max_drop

    good = [c for c in summary if ok(c)]
    best = max(good, key=lambda c: (c.result["accuracy"], -c.result["latency_ratio"])) if good else None
    _write_outputs(out, summary, best, base_acc, cfg, timing.latencies[0].median_ms, orig_size)
    return {"original_accuracy": base_acc, "candidates": [asdict(c) for c in summary],
            "chosen": None if best is None else asdict(best), "int8_speedup": int8_speedup}


def _int8_speedup(model, model_file, task, out, cfg, rank, barrier, original_onnx, shape) -> float:
    """Measured onnxruntime int8 / fp32 speed-up of the original model (cached in out/)."""
    path = out / "int8_speedup.json"
    if rank == 0 and not path.exists():
        from slimkit.deploy.onnx_int8 import export_int8_onnx
        from slimkit.metrics.latency import compare_latency
        from slimkit.quant.ptq import PTQConfig, quantize_ptq

        import torch

        calib = [torch.randn(32, *shape)]
        q = quantize_ptq(model, PTQConfig(weight_bits=8, act_bits=8), calib)
        int8 = export_int8_onnx(q, shape, out / "original-int8-probe.onnx", calib=calib)
        timing = compare_latency([str(original_onnx), str(int8)], shape)
        path.write_text(json.dumps({"speedup": 1.0 / timing.ratio(1, 0).value}))
    barrier()
    return float(json.loads(path.read_text())["speedup"])


def _accuracy_of_original(model, task, limit: int | None) -> float:
    from slimkit import data
    from slimkit.train import evaluate

    test = data.load(task["data"], root=task.get("root"), split="test")
    if limit:
        test = data.subset(test, min(limit, len(test)))  # the same subset the recipe runner scores on
    return float(evaluate(model, data.loader(test, batch_size=256))["top1"])


def _write_outputs(out: Path, rows: list[Candidate], best: Candidate | None, base_acc: float,
                   cfg: AutoConfig, base_ms: float, orig_size: int) -> None:
    import yaml

    lines = [f"# slimkit auto: {cfg.target.describe()}, max drop {cfg.max_drop} points",
             "", f"original: top-1 {100 * base_acc:.2f}%, onnxruntime fp32 {base_ms:.3f} ms, {orig_size:,} bytes", "",
             "| candidate | top-1 | drop (points) | latency vs original | stable | file bytes | pareto | chosen |",
             "|---|---|---|---|---|---|---|---|"]
    front = _pareto(rows)
    for c in rows:
        r = c.result
        lines.append(f"| {c.label} | {100 * r['accuracy']:.2f}% | {r['drop']:+.2f} | {r['latency_ratio']:.3f}x | "
                     f"{'yes' if r['latency_stable'] else 'no'} | {r['size_bytes']:,} | {'*' if c in front else ''} | "
                     f"{'**yes**' if c is best else ''} |")
    lines += ["", "No candidate met the target within the accuracy budget." if best is None else
              f"Chosen: {best.label} (`chosen.yaml` reproduces it with `slimkit run`)."]
    (out / "auto.md").write_text("\n".join(lines) + "\n")
    _plot(out / "pareto.png", rows, front, best)
    if best is not None:
        src = out / "cache" / best.result["key"]
        recipe = yaml.safe_load((src / "recipe.yaml").read_text())
        (out / "chosen.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
        result = json.loads((src / "result.json").read_text())
        shutil.copyfile(src / result["file"], out / f"chosen{Path(result['file']).suffix}")


def _pareto(rows: list[Candidate]) -> list[Candidate]:
    """Candidates no other one beats on both accuracy and latency."""
    return [c for c in rows if not any(
        o.result["accuracy"] >= c.result["accuracy"] and o.result["latency_ratio"] <= c.result["latency_ratio"]
        and (o.result["accuracy"], o.result["latency_ratio"]) != (c.result["accuracy"], c.result["latency_ratio"])
        for o in rows)]


def _plot(path: Path, rows, front, best) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [c.result["latency_ratio"] for c in rows]
    ys = [100 * c.result["accuracy"] for c in rows]
    ax.scatter(xs, ys, c="0.6", label="candidates")
    f = sorted(front, key=lambda c: c.result["latency_ratio"])
    ax.plot([c.result["latency_ratio"] for c in f], [100 * c.result["accuracy"] for c in f], "o-", label="Pareto set")
    if best is not None:
        ax.scatter([best.result["latency_ratio"]], [100 * best.result["accuracy"]], marker="*", s=200, c="red",
                   label="chosen")
    for c, x, y in zip(rows, xs, ys):
        ax.annotate(c.label, (x, y), fontsize=6)
    ax.set_xlabel("latency / original (onnxruntime, measured)")
    ax.set_ylabel("top-1 (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
