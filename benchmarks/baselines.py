"""Baseline models the compression benchmarks start from, trained with slimkit.train.fit.

LeNet-300-100 and LeNet-5 on full Fashion-MNIST, CIFAR ResNet-20 on CIFAR-10 (JPEG copy),
each under its own wall-clock budget: a few timed steps estimate the epoch time, the number of
epochs is chosen to fit the budget (cosine schedule over exactly those epochs), and
`time_budget_s` stops the run if the machine slows down. Then, side by side per model: test
accuracy (full test set) against the published reference, parameters, MACs (slimkit.metrics),
and latency at batch 1 and 64 in torch eager and onnxruntime. The trained models are written
with `save_model` to benchmarks/checkpoints/.

    nice -n 10 python benchmarks/baselines.py --models lenet300 lenet5
    nice -n 10 python benchmarks/baselines.py --models resnet20 --budget-resnet20 1080
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from slimkit import data, zoo
from slimkit.metrics import count_macs, count_params, measure_latency, onnx_latency
from slimkit.train import evaluate, fit, load_model, save_model

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "datasets"


@dataclass(frozen=True)
class Setup:
    arch: str
    dataset: str
    root: str
    ckpt: str
    lr: float
    batch_size: int
    augment: bool
    reference: str  # published figure, context only


SETUPS = {
    "lenet300": Setup("lenet300", "fashion-mnist", "fashion-mnist", "lenet300_fashion.pt", 0.05,
                      128, False, "none for Fashion-MNIST in ANCHORS; MNIST 98.36% (Han'15)"),
    "lenet5": Setup("lenet5", "fashion-mnist", "fashion-mnist", "lenet5_fashion.pt", 0.05, 128,
                    False, "about 90-91% (datasets README); MNIST 99.20% (Han'15)"),
    "resnet20": Setup("resnet20", "cifar10", "cifar10-jpeg.tar.gz", "resnet20_cifar10.pt", 0.1,
                      128, True, "91.25% after 182 epochs (He et al. 2016)"),
}


def plan_steps(model, loader, budget_s: float, max_epochs: int, probe_steps: int) -> tuple[int, int, float]:
    """Time `probe_steps` SGD steps on a copy of the model; plan (epochs, steps, epoch seconds)
    so the run fills ~85% of the budget (the last epoch may be partial: `max_steps` ends it
    and the cosine schedule anneals over exactly the planned steps)."""
    import copy

    net = copy.deepcopy(model).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    it = iter(loader)
    times = []
    for _ in range(probe_steps + 1):
        x, y = next(it)
        t0 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    per_step = sorted(times[1:])[len(times[1:]) // 2]  # median, first step is warm-up
    step_s = per_step * 1.1  # + data loading
    eval_s = 0.1 * step_s * len(loader)  # a test pass per epoch, roughly
    steps = max(1, math.floor(0.85 * budget_s / (step_s + eval_s / len(loader))))
    steps = min(steps, max_epochs * len(loader))
    epochs = math.ceil(steps / len(loader))
    return epochs, steps, (step_s + eval_s / len(loader)) * len(loader)


def run_one(name: str, args: argparse.Namespace) -> dict:
    s = SETUPS[name]
    root = Path(args.data) / s.root
    train_set = data.load(s.dataset, root=root, split="train")
    test_set = data.load(s.dataset, root=root, split="test")
    if name == "resnet20" and args.cifar_train_subset:
        train_set = data.subset(train_set, args.cifar_train_subset, seed=0)
    arch_kwargs = {"num_classes": data.num_classes(s.dataset),
                   "in_channels": data.input_shape(s.dataset)[0]}
    torch.manual_seed(0)
    init = getattr(args, f"init_{name}", None)
    model = load_model(init) if init else zoo.create(s.arch, **arch_kwargs)  # warm start
    train_loader = data.loader(train_set, batch_size=s.batch_size, train=True, augment=s.augment)
    test_loader = data.loader(test_set, batch_size=500)
    budget = getattr(args, f"budget_{name}")
    epochs, steps, est_epoch_s = plan_steps(model, train_loader, budget, args.max_epochs, 20)
    print(f"{name}: ~{est_epoch_s:.0f} s/epoch estimated -> {steps} steps "
          f"({steps / len(train_loader):.2f} epochs) in {budget} s")
    max_steps = steps if steps < epochs * len(train_loader) else None
    t0 = time.perf_counter()
    hist = fit(model, train_loader, epochs=epochs, lr=s.lr, momentum=0.9, weight_decay=5e-4,
               schedule="cosine", val_loader=test_loader, progress=args.progress, seed=0,
               time_budget_s=budget, max_steps=max_steps)
    train_s = time.perf_counter() - t0
    final = evaluate(model, test_loader)
    shape = zoo.input_shape(s.arch, in_channels=arch_kwargs["in_channels"])
    lat = {}
    for bs in (1, 64):
        lat[f"torch_b{bs}"] = measure_latency(model, shape, batch_size=bs, repeats=args.repeats,
                                              threads=args.threads).median_ms
        lat[f"ort_b{bs}"] = onnx_latency(model, shape, batch_size=bs, repeats=args.repeats,
                                         threads=args.threads).median_ms
    ckpt = Path(args.ckpt_dir) / s.ckpt
    save_model(ckpt, model, arch=s.arch, arch_kwargs=arch_kwargs, dataset=s.dataset,
               epochs=hist.epochs, steps=hist.steps, top1=final["top1"], top5=final["top5"],
               lr=s.lr, batch_size=s.batch_size, schedule="cosine", seed=0,
               train_items=len(train_set), stopped=hist.stopped)
    return {
        "model": name, "dataset": s.dataset, "train_items": len(train_set),
        "test_items": final["n"], "epochs": hist.epochs, "planned_epochs": epochs,
        "steps": hist.steps, "planned_steps": steps,
        "epochs_run": round(hist.steps / len(train_loader), 2),
        "stopped": hist.stopped, "train_s": round(train_s, 1),
        "epoch_s": round(sum(hist.epoch_time_s) / max(1, hist.epochs), 1),
        "step_ms": round(sum(hist.step_time_ms) / max(1, hist.epochs), 2),
        "top1": final["top1"], "top5": final["top5"], "per_epoch_top1": hist.val_top1,
        "params": count_params(model), "macs": count_macs(model, shape).total,
        "latency_ms": {k: round(v, 3) for k, v in lat.items()},
        "reference": s.reference, "checkpoint": _rel(ckpt),
        "size_bytes": ckpt.stat().st_size, "lr": s.lr, "batch_size": s.batch_size,
        "augment": s.augment, "budget_s": budget, "command": args.command,
    }


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(HERE.parent))
    except ValueError:
        return str(path)


def _budget_line(r: dict) -> str:
    if "planned_steps" not in r:  # rows from the whole-epoch planner
        return f"- budget {r['budget_s']} s -> {r['planned_epochs']} planned epochs, {r['epochs']} run; "
    return (f"- budget {r['budget_s']} s -> {r['planned_steps']} planned steps "
            f"({r['planned_epochs']} epochs, the last possibly partial), {r['steps']} steps run "
            f"({r['epochs_run']} epochs); ")


def write_report(path: Path, rows: dict[str, dict], threads: int) -> None:
    order = [m for m in SETUPS if m in rows]
    lines = [
        "# Baselines: the trained models the compression benchmarks start from",
        "",
        "Produced by `benchmarks/baselines.py` (slimkit.train.fit: SGD momentum 0.9, weight decay",
        "5e-4, cosine schedule per step, seed 0). The number of steps is planned from a timed probe",
        "to fill ~85% of each model's time budget on this shared 2-core machine (the last epoch",
        "may be partial), so these are short runs, not the papers' schedules;",
        "the published figure is context only. Accuracy is on the full test split. Latency is the",
        f"median of repeated runs with {threads} thread(s) on a machine shared with other jobs,",
        "so it is noisy. Params/MACs from slimkit.metrics (MACs at batch 1).",
        "",
        "| model | data (train items) | epochs | train time s | top-1 | top-5 | published top-1 | params | MACs | torch b1 ms | ort b1 ms | torch b64 ms | ort b64 ms | file KB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in order:
        r = rows[m]
        lat = r["latency_ms"]
        ep = f"{r.get('epochs_run', r['epochs'])}"  # fractional when the last epoch is partial
        if r["stopped"] == "time_budget":
            ep += " (cut by time budget)"
        lines.append(
            f"| {m} | {r['dataset']} ({r['train_items']}) | {ep} | {r['train_s']:.0f} | "
            f"{100 * r['top1']:.2f}% | {100 * r['top5']:.2f}% | {r['reference']} | "
            f"{r['params']:,} | {r['macs']:,} | {lat['torch_b1']:.3f} | {lat['ort_b1']:.3f} | "
            f"{lat['torch_b64']:.3f} | {lat['ort_b64']:.3f} | {r['size_bytes'] / 1024:.0f} |"
        )
    lines += ["", "## Per model: setup, command, test top-1 after each epoch", ""]
    for m in order:
        r = rows[m]
        curve = ", ".join(f"{100 * v:.2f}" for v in r["per_epoch_top1"])
        lines += [
            f"### {m}",
            f"- command: `{r['command']}`",
            f"- data: {r['dataset']}, {r['train_items']} training items, {r['test_items']} test "
            f"items; batch {r['batch_size']}, lr {r['lr']}, augmentation "
            f"{'pad-4 crop + flip' if r['augment'] else 'none'}",
            _budget_line(r) + f"mean epoch {r['epoch_s']} s (incl. test pass), "
            f"mean train step {r['step_ms']} ms",
            f"- test top-1 per epoch (%): {curve}",
            f"- saved: `{r['checkpoint']}`",
            *([f"- note: {r['note']}"] if r.get("note") else []),
            "",
        ]
    lines += [f"Host: {platform.processor() or platform.machine()}, torch {torch.__version__}.", "",
              f"<!-- rows: {json.dumps(rows)} -->", ""]
    path.write_text("\n".join(lines))


def read_rows(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    m = re.search(r"<!-- rows: (.*) -->", path.read_text())
    return json.loads(m.group(1)) if m else {}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    p.add_argument("--data", default=str(SHARED), help="folder holding the shared data sets")
    p.add_argument("--budget-lenet300", type=float, default=150, help="seconds of training")
    p.add_argument("--budget-lenet5", type=float, default=300, help="seconds of training")
    p.add_argument("--budget-resnet20", type=float, default=1080, help="seconds of training")
    p.add_argument("--max-epochs", type=int, default=20)
    p.add_argument("--init-resnet20", default=None,
                   help="continue training from this model file (a second cosine cycle)")
    p.add_argument("--cifar-train-subset", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=30, help="latency repeats")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--ckpt-dir", default=str(HERE / "checkpoints"))
    p.add_argument("--out", default=str(HERE / "results" / "baselines.md"))
    args = p.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    args.command = " ".join(["nice -n 10 python benchmarks/baselines.py", *given])
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = read_rows(out)
    for name in args.models:
        rows[name] = run_one(name, args)
        write_report(out, rows, args.threads)  # after each model: LeNets land early
        r = rows[name]
        print(f"{name}: top1 {100 * r['top1']:.2f}% in {r['epochs']} epochs, {r['train_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
