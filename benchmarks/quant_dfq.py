"""Data-free quantization (Nagel et al. 2019) on MobileNetV2 / CIFAR-10: per-tensor int8
weights with and without cross-layer equalization and bias correction.

A checkpoint benchmarks/checkpoints/mobilenetv2_cifar10.pt is used when present; otherwise
a MobileNetV2 (ReLU6 replaced by ReLU, as in the paper) is trained here briefly on a CIFAR-10
subset and cached under /tmp/slimkit_quant_bench.

    nice -n 10 python benchmarks/quant_dfq.py

The fallback training now runs through `slimkit.train.fit` (`_checkpoints.fit_one_cycle`:
per-sample crop + flip instead of one shift per batch); results in
benchmarks/results/quant_dfq.md predate that change.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

from slimkit import data, zoo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _checkpoints import fit_one_cycle  # noqa: E402  (same folder)
from _host import cpu_line, uptime  # noqa: E402
from slimkit.quant.dfq import equalize_, replace_relu6
from slimkit.quant.diagnostics import layer_sqnr
from slimkit.quant.fold import fold_bn
from slimkit.quant.ptq import PTQConfig, quantize_ptq

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared" / "datasets"
CACHE = Path("/tmp/slimkit_quant_bench")


def tensors(ds, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(ds[int(i)] for i in idx))
    return torch.stack(xs), torch.tensor(ys)


@torch.no_grad()
def top1(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    logits = torch.cat([model(x[i : i + 250]) for i in range(0, len(x), 250)])
    return float((logits.argmax(1) == y).float().mean())


def get_model(args, train) -> tuple[nn.Module, str]:
    ckpt = ROOT / "checkpoints" / "mobilenetv2_cifar10.pt"
    if ckpt.is_file():
        from slimkit.train import load_model

        return replace_relu6(load_model(ckpt)).eval(), f"checkpoint {ckpt.name}, ReLU6 -> ReLU"
    origin = (
        f"trained here (no checkpoint): width {args.width}, ReLU instead of ReLU6, {args.epochs} epochs on "
        f"{args.train} CIFAR-10 training images, SGD one-cycle, random crop + flip"
    )
    model = replace_relu6(zoo.create("mobilenetv2", num_classes=10, width_mult=args.width))
    cached = CACHE / f"mobilenetv2_w{args.width}_{args.train}_{args.epochs}.pt"
    if cached.is_file():
        model.load_state_dict(torch.load(cached, weights_only=True))
        return model.eval(), origin
    g = torch.Generator().manual_seed(1)
    x, y = tensors(train, torch.randperm(len(train), generator=g)[: args.train])
    torch.manual_seed(0)
    t0 = time.time()
    model = fit_one_cycle(model, x, y, args.epochs, weight_decay=4e-5, augment=True)
    print(f"  trained {args.epochs} epochs [{time.time() - t0:.0f}s]", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cached)
    return model.eval(), origin


def range_spread(model: nn.Module) -> tuple[float, float]:
    """Median over depthwise convs (after BN folding) of max/min per-channel weight range."""
    ratios = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            r = m.weight.detach().abs().flatten(1).amax(1)
            ratios.append(float(r.max() / r.min().clamp_min(1e-12)))
    ratios.sort()
    return ratios[len(ratios) // 2], ratios[-1]


@torch.no_grad()
def imbalance(model: nn.Module, spread: float, seed: int = 0) -> nn.Module:
    """Copy of `model` computing the same function with badly balanced channel ranges: for
    every conv -> BN -> ReLU -> conv, BN's gamma and beta of channel i are multiplied by
    a_i and the next conv's input channel i divided by a_i (ReLU commutes with a_i > 0),
    a_i log-uniform in [1/spread, spread]. This is the per-channel range spread that BN
    folding leaves in trained depthwise networks (Nagel et al. 2019, Fig. 2)."""
    import copy

    from slimkit.quant.dfq import equalization_pairs
    from slimkit.quant.fold import find_conv_bn_pairs

    out = copy.deepcopy(model)
    bns = dict(find_conv_bn_pairs(out))
    g = torch.Generator().manual_seed(seed)
    for n1, n2 in equalization_pairs(fold_bn(out)):
        if n1 not in bns:
            continue
        bn, c2 = out.get_submodule(bns[n1]), out.get_submodule(n2)
        a = spread ** (2 * torch.rand(bn.num_features, generator=g) - 1)
        bn.weight.mul_(a)
        bn.bias.mul_(a)
        if c2.groups == c2.in_channels == c2.out_channels:
            c2.weight.div_(a.reshape(-1, 1, 1, 1))
        else:
            c2.weight.div_(a.reshape(1, -1, 1, 1))
    return out


VARIANTS = [
    ("per-tensor W8, float activations", dict(per_channel=False, act_bits=None), "none"),
    ("  + equalization", dict(per_channel=False, act_bits=None, equalize=True), "none"),
    (
        "  + equalization + analytic bias correction (BN stats)",
        dict(per_channel=False, act_bits=None, equalize=True, bias_correction="analytic"),
        "none",
    ),
    ("per-tensor W8A8", dict(per_channel=False), "activation ranges"),
    (
        "  + equalization + analytic bias correction (DFQ)",
        dict(per_channel=False, equalize=True, bias_correction="analytic"),
        "activation ranges",
    ),
    (
        "  + equalization + empirical bias correction",
        dict(per_channel=False, equalize=True, bias_correction="empirical"),
        "activation ranges + BC",
    ),
    ("per-channel W8A8 (reference)", dict(per_channel=True), "activation ranges"),
]


def section(title: str, model: nn.Module, calib, te_x, te_y, variants, t0: float) -> list[str]:
    rows = [("float32", "-", top1(model, te_x, te_y))]
    for label, kw, uses in variants:
        q = quantize_ptq(model, PTQConfig(**kw), calib)
        rows.append((label, uses, top1(q, te_x, te_y)))
        print(
            f"  [{time.time() - t0:.0f}s] {title}: {label.strip()}: {rows[-1][2] * 100:.2f}%",
            flush=True,
        )
    folded = fold_bn(model)
    lines = [f"## {title}", "", "| variant | data used | top-1 |", "|---|---|---:|"]
    lines += [f"| {v} | {u} | {a * 100:.2f}% |" for v, u, a in rows]
    if any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in folded.modules()):
        before = range_spread(folded)
        equalize_(folded)
        after = range_spread(folded)
        lines += [
            "",
            "Depthwise-conv weight range spread (max/min per-channel range after BN folding): "
            f"median {before[0]:.1f}x, worst {before[1]:.1f}x before equalization; "
            f"median {after[0]:.1f}x, worst {after[1]:.1f}x after.",
        ]
    q = quantize_ptq(model, PTQConfig(per_channel=False, act_bits=None), calib)
    worst = sorted(layer_sqnr(q, calib[:1]), key=lambda r: r["local_sqnr_db"])[:3]
    lines += [
        "",
        "Worst local SQNR, per-tensor W8: "
        + ", ".join(f"{r['layer']} {r['local_sqnr_db']:.1f} dB" for r in worst)
        + ".",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--train", type=int, default=3000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--calib", type=int, default=512)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument(
        "--spread", type=float, default=30.0, help="channel range imbalance for section 2"
    )
    p.add_argument("--no-resnet", dest="resnet", action="store_false")
    p.add_argument("--out", default=str(ROOT / "results" / "quant_dfq.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    train = data.load("cifar10", root=str(SHARED), split="train")
    test = data.load("cifar10", root=str(SHARED), split="test")
    model, origin = get_model(args, train)
    g = torch.Generator().manual_seed(0)
    calib_x, _ = tensors(train, torch.randperm(len(train), generator=g)[: args.calib])
    te_x, te_y = tensors(test, torch.randperm(len(test), generator=g)[: args.test])
    calib = [calib_x[i : i + 64] for i in range(0, len(calib_x), 64)]
    body = section(f"1. MobileNetV2 ({origin})", model, calib, te_x, te_y, VARIANTS, t0)
    body += section(
        f"2. The same MobileNetV2 with channel ranges unbalanced by up to {args.spread:g}x "
        "(same float function)",
        imbalance(model, args.spread),
        calib,
        te_x,
        te_y,
        VARIANTS,
        t0,
    )
    ckpt = ROOT / "checkpoints" / "resnet20_cifar10.pt"
    if args.resnet and ckpt.is_file():
        from slimkit.train import load_model

        rn = load_model(ckpt).eval()
        body += section(
            "3. ResNet-20 (checkpoint resnet20_cifar10.pt, no depthwise layers)",
            rn,
            calib,
            te_x,
            te_y,
            [VARIANTS[i] for i in (0, 2, 3, 4, 6)],
            t0,
        )
    seconds = time.time() - t0
    cmd = "nice -n 10 python benchmarks/quant_dfq.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    lines = [
        "# DFQ: per-tensor int8 with cross-layer equalization and bias correction",
        "",
        f"Command: `{cmd.strip()}`",
        "",
        f"Setup: CIFAR-10, top-1 on {len(te_x)} seeded test images. Weights symmetric per tensor "
        "(min/max) unless stated; activations per-tensor affine uint8 from min/max over "
        f"{args.calib} training images (the only data used; rows marked 'none' use no data at all). "
        "BN folded first; ReLU6 replaced by ReLU as in the paper. Section 2 is a controlled "
        "experiment: a function-preserving per-channel rescaling gives the network (trained for a short budget) the "
        "range imbalance that long training + BN folding produce. 1 torch thread, CPU, "
        f"total {seconds:.0f} s.",
        "",
        f"Host: {cpu_line()}; load at the end: `{uptime()}`.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines + body) + "\n")
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
