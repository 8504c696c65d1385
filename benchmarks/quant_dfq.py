"""Data-free quantization (Nagel et al. 2019) on MobileNetV2 / CIFAR-10: per-tensor int8
weights with and without cross-layer equalization and bias correction.

A checkpoint benchmarks/checkpoints/mobilenetv2_cifar10.pt is used when present; otherwise
a MobileNetV2 (ReLU6 replaced by ReLU, as in the paper) is trained here briefly on a CIFAR-10
subset and cached under /tmp/slimkit_quant_bench.

    nice -n 10 python benchmarks/quant_dfq.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

from slimkit import data, zoo
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
    logits = torch.cat([model(x[i:i + 250]) for i in range(0, len(x), 250)])
    return float((logits.argmax(1) == y).float().mean())


def get_model(args, train) -> tuple[nn.Module, str]:
    ckpt = ROOT / "checkpoints" / "mobilenetv2_cifar10.pt"
    if ckpt.is_file():
        from slimkit.train import load_model

        return replace_relu6(load_model(ckpt)).eval(), f"checkpoint {ckpt.name}, ReLU6 -> ReLU"
    origin = (f"trained here (no checkpoint): width {args.width}, ReLU instead of ReLU6, {args.epochs} epochs on "
              f"{args.train} CIFAR-10 training images, SGD one-cycle, random crop + flip")
    model = replace_relu6(zoo.create("mobilenetv2", num_classes=10, width_mult=args.width))
    cached = CACHE / f"mobilenetv2_w{args.width}_{args.train}_{args.epochs}.pt"
    if cached.is_file():
        model.load_state_dict(torch.load(cached, weights_only=True))
        return model.eval(), origin
    g = torch.Generator().manual_seed(1)
    x, y = tensors(train, torch.randperm(len(train), generator=g)[:args.train])
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=4e-5, nesterov=True)
    bs = 128
    steps = args.epochs * (len(x) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
    model.train()
    t0 = time.time()
    for ep in range(args.epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(perm) - bs + 1, bs):
            b = perm[i:i + bs]
            xb = x[b]
            if True:  # random flip + 4-pixel shift (pad-crop)
                flip = torch.rand(len(b), generator=g) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
                dx, dy = torch.randint(-4, 5, (2,), generator=g).tolist()
                xb = torch.roll(nn.functional.pad(xb, (4, 4, 4, 4)), (dy, dx), (2, 3))[:, :, 4:-4, 4:-4]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), y[b]).backward()
            opt.step()
            sched.step()
        print(f"  epoch {ep + 1}/{args.epochs} [{time.time() - t0:.0f}s]", flush=True)
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--train", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--calib", type=int, default=512)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--out", default=str(ROOT / "results" / "quant_dfq.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    train = data.load("cifar10", root=str(SHARED), split="train")
    test = data.load("cifar10", root=str(SHARED), split="test")
    model, origin = get_model(args, train)
    g = torch.Generator().manual_seed(0)
    calib_x, _ = tensors(train, torch.randperm(len(train), generator=g)[:args.calib])
    te_x, te_y = tensors(test, torch.randperm(len(test), generator=g)[:args.test])
    calib = [calib_x[i:i + 64] for i in range(0, len(calib_x), 64)]
    rows = [("float32", "-", top1(model, te_x, te_y))]
    variants = [
        ("per-tensor W8, float activations", dict(per_channel=False, act_bits=None), "no"),
        ("  + equalization", dict(per_channel=False, act_bits=None, equalize=True), "no"),
        ("  + equalization + analytic bias correction (BN stats)",
         dict(per_channel=False, act_bits=None, equalize=True, bias_correction="analytic"), "no"),
        ("per-tensor W8A8", dict(per_channel=False), "activation ranges"),
        ("  + equalization", dict(per_channel=False, equalize=True), "activation ranges"),
        ("  + equalization + analytic bias correction (DFQ)",
         dict(per_channel=False, equalize=True, bias_correction="analytic"), "activation ranges"),
        ("  + equalization + empirical bias correction",
         dict(per_channel=False, equalize=True, bias_correction="empirical"), "activation ranges + BC"),
        ("per-channel W8A8 (reference)", dict(per_channel=True), "activation ranges"),
        ("per-tensor W6A8", dict(weight_bits=6, per_channel=False), "activation ranges"),
        ("  + equalization + analytic bias correction",
         dict(weight_bits=6, per_channel=False, equalize=True, bias_correction="analytic"), "activation ranges"),
    ]
    diag = {}
    for label, kw, uses in variants:
        q = quantize_ptq(model, PTQConfig(**kw), calib)
        rows.append((label, uses, top1(q, te_x, te_y)))
        if label.startswith("per-tensor W8A8") or "(DFQ)" in label:
            diag[label] = layer_sqnr(q, calib[:2])
        print(f"  [{time.time() - t0:.0f}s] {label.strip()}: {rows[-1][2] * 100:.2f}%", flush=True)
    folded = fold_bn(model)
    before = range_spread(folded)
    equalize_(folded)
    after = range_spread(folded)
    seconds = time.time() - t0
    cmd = "nice -n 10 python benchmarks/quant_dfq.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# DFQ: per-tensor int8 MobileNetV2 with cross-layer equalization and bias correction", "",
             f"Command: `{cmd.strip()}`", "",
             f"Setup: MobileNetV2 for CIFAR-10 ({origin}). Top-1 on {len(te_x)} seeded test images. Weights "
             "symmetric per tensor (min/max) unless stated; activations per-tensor affine uint8 from min/max over "
             f"{args.calib} training images (the only data used; 'float activations' rows use no data at all). "
             f"BN folded first. 1 torch thread, CPU, total {seconds:.0f} s.", "",
             "| variant | data used | top-1 |", "|---|---|---:|"]
    lines += [f"| {v} | {u} | {a * 100:.2f}% |" for v, u, a in rows]
    lines += ["", "Depthwise-conv weight range spread (max/min per-channel range after BN folding): "
              f"median {before[0]:.1f}x, worst {before[1]:.1f}x before equalization; "
              f"median {after[0]:.1f}x, worst {after[1]:.1f}x after.", ""]
    for label, rws in diag.items():
        worst = sorted(rws, key=lambda r: r["local_sqnr_db"])[:3]
        lines.append(f"Worst local SQNR, {label.strip()}: " + ", ".join(
            f"{r['layer']} {r['local_sqnr_db']:.1f} dB" for r in worst) + ".")
    lines.append("")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
