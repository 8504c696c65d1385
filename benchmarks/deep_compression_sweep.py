"""Deep Compression (Han, Mao & Dally 2016) on LeNet-300-100 / LeNet-5 (Fashion-MNIST): how far
below Han'15's per-layer densities the file ratio can go, and what it costs in accuracy.

Runs the survey's pipeline (`slimkit.survey.tables.dc_pipeline`: iterative prune/retrain
cycles, k-means sharing conv 8-bit / fc 5-bit, centroid fine-tune, relative indices +
Huffman) over a grid of density scale (x Han's keep fractions) x retrain steps per cycle x
Adam lr. The first row of each model is the survey's `full` setting (the baseline); the
target the survey is asked for is >= 50x at <= 0.3 points lost.

    nice -n 10 python benchmarks/deep_compression_sweep.py --data-root ../shared/datasets
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from _host import cpu_line, uptime

from slimkit.survey.setup import BUDGETS, Survey
from slimkit.survey.tables import DC_RETRAIN_LR, KEEP, dc_pipeline

HERE = Path(__file__).resolve().parent
# (density scale, retrain steps per cycle, Adam lr); None lr = the survey's per-model lr
GRID = ((1.0, 1000, None), (0.75, 1000, None), (0.75, 3000, None), (0.75, 3000, 1e-4),
        (0.65, 2000, 2e-4), (0.65, 3000, None), (0.55, 2000, 2e-4))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", required=True, help="holds fashion-mnist/")
    p.add_argument("--models", nargs="+", default=["lenet300"], choices=sorted(KEEP))
    p.add_argument("--cycles", type=int, default=BUDGETS["full"].dc_cycles)
    p.add_argument("--out", default=str(HERE / "results" / "deep_compression_sweep.md"))
    args = p.parse_args(argv)
    out = Path(args.out)
    try:  # before any work: a sweep takes minutes
        out.parent.mkdir(parents=True, exist_ok=True)
        out.touch()
    except OSError as e:
        p.error(f"cannot write {out}: {e.strerror}")
    torch.set_num_threads(1)
    s = Survey(BUDGETS["full"], Path(tempfile.mkdtemp(prefix="slimkit-dc-sweep-")),
               data_root=Path(args.data_root), checkpoints=HERE / "checkpoints")
    ds = s.dataset("digits")
    if ds["name"] != "fashion-mnist":
        p.error(f"no Fashion-MNIST under {args.data_root}")
    train, test = s.loaders(ds, 0)
    load_before = uptime()
    rows = []
    for arch in args.models:
        base, info = s.baseline(arch, "digits", 0)
        for scale, steps, lr in GRID:
            lr = lr or DC_RETRAIN_LR[arch]
            torch.manual_seed(0)
            t = time.perf_counter()
            r = dc_pipeline(base, train, test, keep={k: v * scale for k, v in KEEP[arch].items()},
                             uniform_keep=None, ft_steps=steps, kmeans_iter=300,
                             cycles=args.cycles, retrain_lr=lr)
            rows.append((arch, scale, steps, lr, info["top1"], r, time.perf_counter() - t))
            loss = 100 * (info["top1"] - r["acc_final"]["top1"])
            print(f"{arch} scale {scale} steps {steps} lr {lr:g}: "
                  f"{r['fp32_bytes'] / r['huffman_bytes']:.1f}x at -{loss:.2f}", flush=True)
    lines = [
        "# Deep Compression below Han's densities: file ratio vs accuracy (Fashion-MNIST)", "",
        f"- Command: `nice -n 10 python benchmarks/deep_compression_sweep.py {' '.join(sys.argv[1:])}`",
        f"- CPU: {cpu_line()}; torch {torch.__version__}, 1 thread",
        f"- Load before: `{load_before}`; after: `{uptime()}`",
        f"- Pipeline: the survey's Deep Compression ({args.cycles} prune/retrain cycles, k-means "
        "conv 8-bit / fc 5-bit, centroid fine-tune, relative indices + Huffman); one seed per "
        "row. Scale multiplies Han'15's per-layer keep fractions; the scale-1.0, 1000-step row "
        "is the survey's `full` setting. Ratio = fp32 parameter bytes / Huffman file bytes.", "",
        "| model | density scale | retrain steps / cycle | lr | density | top-1 before | after "
        "retrain | after sharing | loss (points) | ratio | >= 50x at <= 0.3 | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arch, scale, steps, lr, before, r, secs in rows:
        loss = 100 * (before - r["acc_final"]["top1"])
        ratio = r["fp32_bytes"] / r["huffman_bytes"]
        lines.append(
            f"| {arch} | {scale:g} | {steps} | {lr:g} | {r['density']:.3f} | {100 * before:.2f}% "
            f"| {100 * r['acc_retrained']['top1']:.2f}% | {100 * r['acc_final']['top1']:.2f}% "
            f"| {loss:.2f} | {ratio:.1f}x | {'yes' if ratio >= 50 and loss <= 0.3 else 'no'} "
            f"| {secs:.0f} |")
    met = [r for r in rows if r[5]["fp32_bytes"] / r[5]["huffman_bytes"] >= 50
           and 100 * (r[4] - r[5]["acc_final"]["top1"]) <= 0.3]
    lines += ["", f"- Rows meeting >= 50x at <= 0.3 points: {len(met)} of {len(rows)}.",
              "- Single runs differ by about 0.4 points between CPUs (the survey's LeNet-300-100 "
              "row: -0.27 on an AMD EPYC in survey.md at commit ce704f8, -0.65 on a Xeon, same code "
              "and seed), so differences "
              "below that are noise.", ""]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
