"""Mixed precision at equal weight size: HAQ vs HAWQ (Hessian trace) vs greedy SQNR vs uniform bits.

LeNet-5 on Fashion-MNIST (the baselines' checkpoint), post-training quantization only (no
fine-tuning for any method), activations at 8 bits, per-channel symmetric weights. Budgets
are fractions of the all-8-bit weight bytes (0.5 = 4 bits on average). HAQ and HAWQ score on
1,000 held-out training images; every method calibrates on the same 256 training images;
top-1 is on the full 10,000-image test set.

    python benchmarks/auto_mixed.py [--budgets 0.5 0.375] [--episodes 60] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from slimkit import data
from slimkit.auto.haq import HAQConfig, haq, layers_of, quantize_with
from slimkit.auto.hawq import hawq_bits, hessian_traces
from slimkit.quant.mixed import MixedConfig, quantize_mixed
from slimkit.quant.ptq import PTQConfig, quantize_ptq

from _checkpoints import trained  # same folder
from _host import cpu_line  # same folder

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent / "shared" / "datasets" / "fashion-mnist"
OUT = HERE / "results" / "auto_mixed.md"


def tensors(ds, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    return torch.stack([ds[int(i)][0] for i in idx]), torch.tensor([int(ds[int(i)][1]) for i in idx])


def top1(model, x, y) -> float:
    with torch.no_grad():
        return float((torch.cat([model(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)]) == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", nargs="+", type=float, default=[0.5, 0.375])
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = ap.parse_args()
    torch.set_num_threads(1)
    started, load0 = time.time(), os.getloadavg()[0]
    found = trained("lenet5")
    if found is None:
        sys.exit("benchmarks/checkpoints/lenet5_fashion.pt is missing: run benchmarks/baselines.py first")
    model, desc = found
    train = data.load("fashion-mnist", root=str(ROOT), split="train")
    test = data.load("fashion-mnist", root=str(ROOT), split="test")
    xt, yt = tensors(test, len(test), 0)
    xc, _ = tensors(train, 256, 1)
    xv, yv = tensors(train, 1000, 2)
    calib = [xc]
    val = [(xv[i:i + 500], yv[i:i + 500]) for i in range(0, 1000, 500)]
    shape = (1, 28, 28)
    layers = layers_of(model, shape)
    names = [layer.name for layer in layers]
    params = {layer.name: layer.params for layer in layers}
    full = sum(params.values())  # bytes at 8 bits
    float_top1 = top1(model, xt, yt)
    t0 = time.time()
    traces = hessian_traces(model, names, [(xv[i:i + 250], yv[i:i + 250]) for i in range(0, 1000, 250)], samples=16)
    trace_s = time.time() - t0
    rows = []
    for budget in args.budgets:
        mean_bits = 8 * budget
        limit = budget * full

        def size(bits):
            return sum(params[n] * b for n, b in bits.items()) / 8 / full

        for b in (4, 3, 2):  # the uniform width that fits
            if b <= mean_bits:
                q = quantize_ptq(model, PTQConfig(weight_bits=b, act_bits=8), calib)
                rows.append((budget, f"uniform W{b}A8", top1(q, xt, yt), b / 8, "", 0.0))
                break
        t0 = time.time()
        q = quantize_mixed(model, MixedConfig(budget_bits=mean_bits, candidates=(8, 7, 6, 5, 4, 3, 2), act_bits=8), calib)
        bits = {n: w for n, (w, _) in q.bit_assignment.items()}
        rows.append((budget, "greedy SQNR (quant.mixed)", top1(q, xt, yt), size(bits), bits, time.time() - t0))
        t0 = time.time()
        bits = hawq_bits(model, names, traces, limit)
        q = quantize_with(model, layers, [(bits[n], 8) for n in names], calib)
        rows.append((budget, "HAWQ-V2 (Hessian trace)", top1(q, xt, yt), size(bits), bits, time.time() - t0 + trace_s))
        accs, sizes, times = [], [], []
        for seed in args.seeds:
            t0 = time.time()
            res = haq(model, HAQConfig(budget="size", target=budget, act_bits=8, episodes=args.episodes,
                                       warmup=max(1, args.episodes // 4), seed=seed),
                      input_shape=shape, calib=calib, val_loader=val)
            times.append(time.time() - t0)
            bits = {n: w for n, (w, _) in res.bits.items()}
            accs.append(top1(res.model, xt, yt))
            sizes.append(size(bits))
        rows.append((budget, f"HAQ (DDPG, {args.episodes} episodes, {len(args.seeds)} seeds)", statistics.fmean(accs),
                     statistics.fmean(sizes), f"top-1 per seed: {', '.join(f'{100 * a:.2f}' for a in accs)}; "
                     f"last bits {bits}", statistics.fmean(times)))
        print(rows[-4:], flush=True)
    lines = [
        "# Mixed precision at equal weight size (LeNet-5, Fashion-MNIST, PTQ without fine-tuning)",
        "",
        f"Command: `python benchmarks/auto_mixed.py --budgets {' '.join(map(str, args.budgets))} "
        f"--episodes {args.episodes} --seeds {' '.join(map(str, args.seeds))}` ({time.time() - started:.0f} s)",
        f"CPU: {cpu_line()}; 1 thread; load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end.",
        f"Model: {desc}; float top-1 {100 * float_top1:.2f}% on the 10,000 test images.",
        "Size = weight bytes as a fraction of all-8-bit weights; activations 8-bit for every method.",
        "",
        "| budget | method | test top-1 | size | bits / notes | search s |",
        "|---|---|---|---|---|---|",
        *[f"| {b} | {m} | {100 * a:.2f}% | {s:.3f} | {n} | {t:.1f} |" for b, m, a, s, n, t in rows],
        "",
        "Hessian traces (Hutchinson, 16 samples x 4 batches): "
        + ", ".join(f"{n} {traces[n]:.3g}" for n in names),
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
