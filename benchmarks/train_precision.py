"""Training step time in float32 vs bfloat16 autocast (`slimkit.train.fit(precision="bf16")`).

Median and spread of SGD steps (batch 128, channels-last, synthetic inputs: the data do not
change the arithmetic) of zoo models, the two precisions interleaved round by round so a
change of load hits both alike. bf16 autocast pays only where the CPU has native bf16 dot
products (AVX-512 BF16, AMX); elsewhere oneDNN emulates it and it is slower.

    nice -n 10 python benchmarks/train_precision.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from slimkit import zoo
from _host import cpu_line, uptime  # same folder

HERE = Path(__file__).resolve().parent
MODELS = ("resnet20", "alexnet", "lenet5")


def step_fn(arch: str, precision: str):
    torch.manual_seed(0)
    model = zoo.create(arch, num_classes=10).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(128, *zoo.input_shape(arch)).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,))

    def step() -> float:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.float().backward()
        opt.step()
        return time.perf_counter() - t0

    return step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=3, help="timed steps per round and variant")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=zoo.names())
    p.add_argument("--out", default=str(HERE / "results" / "train_precision.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    before = uptime()
    rows = []
    for arch in args.models:
        steps = {v: step_fn(arch, v) for v in ("fp32", "bf16")}
        for fn in steps.values():  # warm-up: oneDNN picks and caches its kernels
            fn(), fn()
        times: dict[str, list[float]] = {v: [] for v in steps}
        for _ in range(args.rounds):
            for v, fn in steps.items():
                times[v].append(statistics.median(fn() for _ in range(args.steps)))
        med = {v: statistics.median(t) for v, t in times.items()}
        spread = {v: (max(t) - min(t)) / med[v] for v, t in times.items()}
        ratios = sorted(a / b for a, b in zip(times["fp32"], times["bf16"]))
        rows.append((arch, med, spread, statistics.median(ratios), ratios[0], ratios[-1]))
        print(f"{arch}: fp32 {1000 * med['fp32']:.0f} ms, bf16 {1000 * med['bf16']:.0f} ms, "
              f"speed-up {statistics.median(ratios):.2f}x", flush=True)
    lines = ["# Training step time: float32 vs bfloat16 autocast", "",
             f"Command: `nice -n 10 python benchmarks/train_precision.py "
             f"{' '.join(sys.argv[1:] if argv is None else argv)}`", "",
             f"- CPU: {cpu_line()}", f"- torch {torch.__version__}, {args.threads} thread(s)",
             f"- load before: `{before}`; after: `{uptime()}`",
             f"- batch 128, channels-last, SGD momentum; {args.rounds} interleaved rounds of "
             f"{args.steps} steps per precision; spread = (max - min) / median of the rounds", "",
             "| model | fp32 ms/step | bf16 ms/step | fp32 spread | bf16 spread | "
             "speed-up (median, min-max of rounds) | s per 391 bf16 steps (a CIFAR-10 epoch) |",
             "|---|---|---|---|---|---|---|"]
    for arch, med, spread, r, lo, hi in rows:
        lines.append(f"| {arch} | {1000 * med['fp32']:.0f} | {1000 * med['bf16']:.0f} | "
                     f"{100 * spread['fp32']:.0f}% | {100 * spread['bf16']:.0f}% | "
                     f"{r:.2f}x ({lo:.2f}-{hi:.2f}) | {391 * med['bf16']:.0f} |")
    lines += ["", "Accuracy is not measured here: the baselines trained with bf16 "
              "(`baselines.md`, ResNet-20 and AlexNet-CIFAR) are evaluated in float32.", ""]
    Path(args.out).write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
