"""Depthwise-separable replacement (survey section 3.4, Table 8) vs the unchanged baseline.

AlexNet-CIFAR on a CIFAR-10 subset (baseline trained here, briefly: no trained AlexNet
checkpoint exists) and LeNet-5 on Fashion-MNIST (benchmarks/checkpoints/lenet5_fashion.pt).
Each model is fine-tuned for the same short budget twice: unchanged, and after
`slimkit.lowrank.separable.separate` (every eligible conv -> depthwise + pointwise, initialised
by the rank-1-per-input-channel fit). Reported: test top-1 before / after the fine-tune,
params, MACs and torch latency at batch 1 with 1 thread (median of 3 interleaved rounds).

    nice -n 10 python benchmarks/separable.py            # writes results/separable.md
    nice -n 10 python benchmarks/separable.py --quick    # a smoke run (tiny subsets)
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from slimkit import data, zoo
from slimkit.distill import DistillConfig, distill
from slimkit.lowrank.separable import SeparableConfig, separate
from slimkit.metrics import count_macs, count_params, measure_latency
from slimkit.train import evaluate, fit, load_model
from _host import cpu_line, uptime  # same folder

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "datasets"
OUT = HERE / "results" / "separable.md"
CACHE = Path("/tmp/slimkit_separable_bench")  # the briefly trained AlexNet, reused by reruns


def loaders(dataset: str, root: Path, train_n: int, ft_n: int, test_n: int, augment: bool):
    train = data.subset(data.load(dataset, root=root, split="train"), train_n, seed=0)
    test = data.subset(data.load(dataset, root=root, split="test"), test_n, seed=0)
    ft = data.subset(data.load(dataset, root=root, split="train"), ft_n, seed=1)
    return (data.loader(train, batch_size=128, train=True, augment=augment),
            data.loader(ft, batch_size=128, train=True, augment=augment),
            data.loader(test, batch_size=500))


def alexnet_baseline(train_loader, epochs: int, quick: bool) -> tuple[nn.Module, str]:
    """A briefly trained AlexNet-CIFAR (cached in CACHE, so a rerun skips the training)."""
    recipe = (f"trained by this script: {epochs} epochs on {len(train_loader.dataset)} training "
              "images, Adam lr 2e-3 one-cycle, weight decay 5e-4, label smoothing 0.1, seed 0")
    path = CACHE / f"alexnet_{len(train_loader.dataset)}_{epochs}.pt"
    if path.is_file() and not quick:
        return load_model(path).eval(), f"{recipe} (cached in {path} by an earlier run)"
    torch.manual_seed(0)
    model = zoo.create("alexnet")
    t = time.perf_counter()
    fit(model, train_loader, epochs=epochs, optimizer="adam", lr=2e-3, weight_decay=5e-4,
        schedule="onecycle", label_smoothing=0.1, channels_last=True, progress=False, seed=0)
    if not quick:
        from slimkit.train import save_model
        CACHE.mkdir(parents=True, exist_ok=True)
        save_model(path, model, arch="alexnet")
    return model.eval(), f"{recipe} ({time.perf_counter() - t:.0f} s)"


def latency_pair(a: nn.Module, b: nn.Module, shape, repeats: int) -> tuple[float, float]:
    ra, rb = [], []
    for _ in range(3):
        ra.append(measure_latency(a, shape, batch_size=1, warmup=5, repeats=repeats, threads=1).median_ms)
        rb.append(measure_latency(b, shape, batch_size=1, warmup=5, repeats=repeats, threads=1).median_ms)
    return statistics.median(ra), statistics.median(rb)


def finetune(model: nn.Module, loader, lr: float, epochs: int,
             teacher: nn.Module | None = None) -> nn.Module:
    """The same short run for every row; with ``teacher``, Hinton's KD (T=4, alpha=0.9)."""
    model = copy.deepcopy(model)
    kw = dict(epochs=epochs, optimizer="sgd", lr=lr, schedule="onecycle", channels_last=True,
              progress=False, seed=0)
    if teacher is None:
        fit(model, loader, **kw)
    else:
        distill(model, teacher.eval(), loader, DistillConfig(loss="kd", T=4.0, alpha=0.9), **kw)
    return model.eval().to(memory_format=torch.contiguous_format)


def run_net(arch: str, base: nn.Module, origin: str, ft_loader, test_loader, args,
            out: list[str]) -> None:
    shape = zoo.input_shape(arch)
    # MobileNets keep the first conv full: a 3-channel stem has little to separate and its
    # rank-1 fit is the worst of all layers; the last row separates it as well
    skip = ("features.0",) if arch == "alexnet" else ()
    rows = [("baseline (unchanged)", base, None),
            ("separable", None, SeparableConfig(exclude=skip)),
            ("separable + BN between", None, SeparableConfig(exclude=skip, batchnorm=True)),
            ("separable + BN between, distilled from the baseline", None,
             SeparableConfig(exclude=skip, batchnorm=True))]
    if skip:
        rows.append(("separable + BN between, stem conv too", None, SeparableConfig(batchnorm=True)))
    p0, m0 = count_params(base), count_macs(base, shape).total
    acc0 = evaluate(base, test_loader)["top1"]
    out += [f"## {arch}", "", f"- baseline: {origin}; test top-1 {100 * acc0:.2f}% on "
            f"{len(test_loader.dataset)} test images",
            f"- fine-tune: {args.ft_epochs} epoch(s) on {len(ft_loader.dataset)} training images "
            f"(a subset disjoint in seed from the baseline's), SGD momentum 0.9, one-cycle peak lr "
            f"{args.ft_lr}, same for every row (the distilled row: KD loss, T 4, alpha 0.9, "
            "teacher = the baseline before its fine-tune)", "",
            "| variant | top-1 before fine-tune | top-1 after fine-tune | params | MACs | latency b1 "
            "base -> new (ms) | r_p | r_c | r_T b1 | fine-tune s |", "|---|---|---|---|---|---|---|---|---|---|"]
    details = []
    for label, model, cfg in rows:
        if cfg is not None:
            res = separate(base, cfg, input_shape=shape)
            model = res.model.eval()
            if "distilled" not in label and "stem" not in label:
                details += [f"**{label}**", "", res.table(), ""]
        before = evaluate(model, test_loader)["top1"]
        t = time.perf_counter()
        teacher = base if "distilled" in label else None
        tuned = finetune(model, ft_loader, args.ft_lr, args.ft_epochs, teacher)
        t_ft = time.perf_counter() - t
        after = evaluate(tuned, test_loader)["top1"]
        p1, m1 = count_params(tuned), count_macs(tuned, shape).total
        lb, ln = latency_pair(base, tuned, shape, args.repeats)
        out.append(f"| {label} | {100 * before:.2f}% | {100 * after:.2f}% | {p1:,} | {m1:,} | "
                   f"{lb:.3f} -> {ln:.3f} | {p1 / p0:.3f} | {m1 / m0:.3f} | {ln / lb:.2f} | {t_ft:.0f} |")
        print(out[-1], file=sys.stderr, flush=True)
    out += ["", "Per-layer decisions (rel. error = ||W - W_hat||_F / ||W||_F of the kernel, the "
            "square root of the discarded squared singular values over ||W||_F):", ""] + details


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny subsets, for a smoke run")
    ap.add_argument("--nets", nargs="+", default=["lenet5", "alexnet"], choices=["lenet5", "alexnet"])
    ap.add_argument("--alex-train-n", type=int, default=10000)
    ap.add_argument("--alex-epochs", type=int, default=4)
    ap.add_argument("--ft-n", type=int, default=5000)
    ap.add_argument("--ft-epochs", type=int, default=2)
    ap.add_argument("--ft-lr", type=float, default=0.01)
    ap.add_argument("--test-n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args(argv)
    if args.quick:
        args.alex_train_n, args.alex_epochs, args.ft_n, args.test_n, args.repeats = 512, 1, 256, 256, 5
    torch.set_num_threads(1)
    t_all = time.perf_counter()
    command = "nice -n 10 python benchmarks/separable.py " + " ".join(sys.argv[1:] if argv is None else argv)
    load0 = uptime()
    body: list[str] = []
    if "lenet5" in args.nets:
        _, ft, test = loaders("fashion-mnist", SHARED / "fashion-mnist", 1000, args.ft_n, args.test_n, False)
        base = load_model(HERE / "checkpoints" / "lenet5_fashion.pt").eval()
        run_net("lenet5", base, "checkpoint benchmarks/checkpoints/lenet5_fashion.pt (Fashion-MNIST)",
                ft, test, args, body)
    if "alexnet" in args.nets:
        train, ft, test = loaders("cifar10", SHARED / "cifar10-jpeg.tar.gz", args.alex_train_n,
                                  args.ft_n, args.test_n, True)
        base, origin = alexnet_baseline(train, args.alex_epochs, args.quick)
        base = base.to(memory_format=torch.contiguous_format)
        run_net("alexnet", base, origin + " (CIFAR-10, crop + flip)", ft, test, args, body)
    wall = time.perf_counter() - t_all
    head = ["# Depthwise-separable replacement vs baseline", "",
            f"Command: `{command}` ({wall / 60:.1f} min wall). The script is sized for about "
            "10 minutes on an idle 2-core host, 1 thread; on a shared machine the wall time "
            "grows with the load (see below), the CPU time does not.", "",
            f"Setup: CPU {cpu_line()}; torch {torch.__version__}, 1 thread; load before: "
            f"`{load0}`; after: `{uptime()}`. Latency: torch eager, batch 1, median of 3 "
            "interleaved rounds (noisy under this load). r_p, r_c, r_T = new / baseline params, "
            "MACs, latency (lower is better). Accuracy is on a test subset and one seed: "
            "differences under ~1 point are within noise.", ""]
    if args.quick:
        head.insert(2, "**Smoke run (--quick): tiny subsets, numbers mean nothing.**\n")
    OUT.write_text("\n".join(head + body) + "\n")
    print(OUT.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
