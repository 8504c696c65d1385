"""Quantization with training: QAT, PACT, INQ, BinaryConnect, XNOR, ternary vs float.

Each method starts from the same float model and gets the same fine-tuning budget (the same
number of SGD steps over the same training subset); INQ spreads those steps over its
re-training phases. "before" is the method's accuracy right after conversion (no training),
"after" the accuracy after the budget. LeNet-5 on Fashion-MNIST, ResNet-20 on CIFAR-10.
Float checkpoints come from benchmarks/checkpoints/ when present, else are trained briefly
here (the results file says which).

    nice -n 10 python benchmarks/quant_training.py [--lenet-train 60000] [--r20-train 5000]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from slimkit import data, zoo
from slimkit.metrics import param_bytes
from slimkit.quant.binary import ClipLatent, prepare_binary
from slimkit.quant.inq import INQConfig, prepare_inq
from slimkit.quant.pact import PACTRegularizer, init_alpha_, prepare_pact
from slimkit.quant.qat import QATConfig, convert, prepare_qat
from slimkit.errors import UserError
from slimkit.train import evaluate, fit

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared" / "datasets"


def tensors(name: str, split: str, n: int | None, seed: int = 0) -> TensorDataset:
    ds = data.load(name, root=str(SHARED), split=split)
    idx = (torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
           if n else torch.arange(len(ds)))
    xs, ys = zip(*(ds[int(i)] for i in idx))
    return TensorDataset(torch.stack(xs), torch.tensor(ys))


def float_model(arch: str, ckpt: str, train: TensorDataset, epochs: int, lr: float
                ) -> tuple[nn.Module, str]:
    path = ROOT / "checkpoints" / ckpt
    if path.is_file():
        from slimkit.train import load_model
        return load_model(path).eval(), f"checkpoint {path.relative_to(ROOT.parent)}"
    torch.manual_seed(0)
    model = zoo.create(arch)
    fit(model, DataLoader(train, batch_size=128, shuffle=True), epochs=epochs, lr=lr,
        progress=False)
    return model.eval(), (f"no checkpoint: trained here from scratch, {epochs} epochs on "
                          f"{len(train)} images, SGD lr {lr} cosine")


def size_bytes(model: nn.Module, inq=None) -> int:
    return inq.storage_bytes(model) + sum(
        4 * p.numel() for n, p in model.named_parameters()
        if not any(n.startswith(k + ".") for k in inq.masks)) if inq else param_bytes(model)


def run_method(name: str, base: nn.Module, train: TensorDataset, test: DataLoader,
               steps: int, lr: float) -> dict:
    """Convert ``base`` with method ``name``; fine-tune ``steps`` SGD steps; evaluate."""
    loader = DataLoader(train, batch_size=128, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    hooks: list = []
    inq = None
    kind, _, bits = name.partition("-")
    if kind in ("qat", "qatbn"):
        model = prepare_qat(base, QATConfig(weight_bits=int(bits[1]), act_bits=8,
                                            fold=kind == "qat"))
    elif kind == "pact":
        b = int(bits[1])
        model = prepare_pact(base, bits=b, weight_bits=b)
        init_alpha_(model, train.tensors[0][:256])
        hooks.append(PACTRegularizer(5e-4))
    elif kind in ("binaryconnect", "xnor", "ternary"):
        model = prepare_binary(base, kind)
        hooks.append(ClipLatent())
    elif kind == "inq":
        portions = (0.5, 0.75, 0.875, 1.0)
        model, inq = prepare_inq(base, INQConfig(bits=int(bits[1]), portions=portions))
    else:
        raise ValueError(name)
    t0 = time.perf_counter()
    if inq is not None:
        inq.advance(model)
        before = evaluate(model.eval(), test)["top1"]
        per = max(1, steps // 3)
        for _ in range(3):            # retrain after 50%, 75%, 87.5%, then quantize the rest
            fit(model.train(), loader, epochs=math.ceil(per / len(loader)), lr=lr,
                hooks=[inq], progress=False, max_steps=per)
            inq.advance(model)
    else:
        if kind in ("qat", "qatbn"):  # one no-grad training-mode pass sets the EMA act ranges
            with torch.no_grad():
                model.train()(train.tensors[0][:256])
        before = evaluate(model.eval(), test)["top1"]
        try:
            fit(model.train(), loader, epochs=math.ceil(steps / len(loader)), lr=lr, hooks=hooks,
                progress=False, max_steps=steps)
        except UserError as exc:  # fit stops on a non-finite loss: record the collapse
            print(f"{name}: {exc}", flush=True)
            return {"method": name, "before": before, "after": float("nan"),
                    "train_s": time.perf_counter() - t0, "size": size_bytes(model, inq),
                    "note": "diverged (loss NaN)"}
    train_s = time.perf_counter() - t0
    if kind in ("qat", "qatbn"):
        model = convert(model)
    after = evaluate(model.eval(), test)["top1"]
    return {"method": name, "before": before, "after": after, "train_s": train_s,
            "size": size_bytes(model, inq)}


METHODS = {
    "qat-w4a8": ("QAT (Jacob'18), BN folded", "4", "8"),
    "qat-w2a8": ("QAT (Jacob'18), BN folded", "2", "8"),
    "qatbn-w4a8": ("QAT, BN kept in float (fold=False)", "4", "8"),
    "qatbn-w2a8": ("QAT, BN kept in float (fold=False)", "2", "8"),
    "pact-w4a4": ("PACT + DoReFa weights", "4", "4"), "pact-w2a2": ("PACT + DoReFa weights", "2", "2"),
    "inq-b5": ("INQ powers of two", "5", "32"), "inq-b3": ("INQ powers of two", "3", "32"),
    "ternary": ("TWN ternary", "2 (ternary)", "32"),
    "xnor": ("XNOR-style binary (alpha per channel)", "1", "32"),
    "binaryconnect": ("BinaryConnect", "1", "32"),
}


def bench(title: str, arch: str, base: nn.Module, how: str, train: TensorDataset,
          test_ds: TensorDataset, steps: int, lr: float, methods: list[str]) -> list[str]:
    test = DataLoader(test_ds, batch_size=500)
    ref = evaluate(base, test)["top1"]
    rows = [f"## {title}", "", f"- float model: {how}",
            f"- fine-tuning budget per method: {steps} SGD steps (batch 128, lr {lr}, "
            f"momentum 0.9, wd 5e-4, cosine) on {len(train)} training images; "
            f"test: {len(test_ds)} images", "",
            "| method | W bits | A bits | top-1 before FT | top-1 after FT | vs float | "
            "weight bytes | FT time s |", "|---|---|---|---|---|---|---|---|",
            f"| float | 32 | 32 | {ref:.4f} | {ref:.4f} | +0.0000 | {param_bytes(base):,} | - |"]
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in base.modules())
    for name in methods:
        if name.startswith("qatbn") and not has_bn:
            continue                 # identical to the folded variant without BN
        r = run_method(name, base, train, test, steps, lr)
        label, wb, ab = METHODS[name]
        after = r.get("note") or f"{r['after']:.4f}"
        delta = "-" if "note" in r else f"{r['after'] - ref:+.4f}"
        rows.append(f"| {label} | {wb} | {ab} | {r['before']:.4f} | {after} | "
                    f"{delta} | {r['size']:,} | {r['train_s']:.1f} |")
        print(rows[-1], flush=True)
    return rows + [""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lenet-train", type=int, default=20000)
    ap.add_argument("--lenet-steps", type=int, default=150)
    ap.add_argument("--r20-train", type=int, default=4000)
    ap.add_argument("--r20-test", type=int, default=1000)
    ap.add_argument("--r20-float-epochs", type=int, default=4)
    ap.add_argument("--r20-steps", type=int, default=30)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--skip-resnet", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "results" / "quant_training.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    cmd = "nice -n 10 python benchmarks/quant_training.py " + " ".join(sys.argv[1:])
    lines = ["# Quantization with training", "", f"Command: `{cmd.strip()}`", "",
             "Setup: 1 CPU thread; seed 0; every method starts from the same float model and "
             "gets the same number of fine-tuning steps. BinaryConnect (unscaled +-1 weights) on "
             "networks without BatchNorm, such as this LeNet-5, blows up the activation scale; "
             "no per-method tuning was done. First and last layers stay float for "
             "PACT/binary/ternary (as in those papers); QAT and INQ quantize every conv/linear. "
             "QAT folds BN first (the 'BN kept' rows keep it as a float layer) and uses 8-bit affine activations (EMA ranges, initialised by "
             "one forward pass over 256 training images before the 'before' column). PACT alpha "
             "starts at the 99.9th percentile of each ReLU input (fine-tuning, not the paper's "
             "from-scratch 10). Weight bytes: storage_bytes() of the quantized layers "
             "(packed codes + scales + biases) plus fp32 for the rest.", ""]
    ftrain = tensors("fashion-mnist", "train", args.lenet_train)
    ftest = tensors("fashion-mnist", "test", None)
    base, how = float_model("lenet5", "lenet5_fashion.pt", ftrain, 2, 0.05)
    lines += bench("LeNet-5, Fashion-MNIST", "lenet5", base, how, ftrain, ftest,
                   args.lenet_steps, 0.01, args.methods)
    if not args.skip_resnet:
        ctrain = tensors("cifar10", "train", args.r20_train)
        ctest = tensors("cifar10", "test", args.r20_test)
        base, how = float_model("resnet20", "resnet20_cifar10.pt", ctrain,
                                args.r20_float_epochs, 0.1)
        lines += bench("ResNet-20, CIFAR-10 (short budget, subsets)", "resnet20", base, how,
                       ctrain, ctest, args.r20_steps, 0.01, args.methods)
    lines += [f"Total wall time: {time.perf_counter() - t0:.0f} s.", ""]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
