"""Latency lookup tables: predicted vs measured whole-model latency on this host.

For each zoo model, backend (torch eager, onnxruntime fp32) and batch size, the table
(``slimkit.auto.LatencyTable``, NetAdapt's per-layer LUT) predicts the latency as the sum of
its units; the whole model is measured with the same thread count. Prediction and measurement
alternate in rounds (so load hits both alike) and the median of the rounds is reported with
its spread. A roofline estimate for the survey's device profiles (Table 8) is given beside.

    python benchmarks/latency_lut.py [--models lenet5 resnet20 mobilenetv2 vgg16] [--rounds 5]
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

from slimkit import zoo
from slimkit.auto import LatencyTable
from slimkit.metrics.devices import SURVEY_DEVICES, roofline
from slimkit.metrics.latency import measure_latency, onnx_latency
from _host import cpu_line  # same folder

OUT = Path(__file__).resolve().parent / "results" / "latency_lut.md"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["lenet5", "resnet20", "mobilenetv2", "vgg16"])
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 16])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    rows = []
    started = time.time()
    with tempfile.TemporaryDirectory() as cache:
        for name in args.models:
            model = zoo.create(name).eval()
            shape = zoo.input_shape(name)
            for backend in ("torch", "onnxruntime"):
                for batch in args.batch:
                    table = LatencyTable.for_host(backend, batch, 1, cache_dir=cache, repeats=20)
                    first = time.time()
                    table.predict(model, shape)  # builds the table
                    build_s = time.time() - first
                    preds, meas = [], []
                    measure = measure_latency if backend == "torch" else onnx_latency
                    for _ in range(args.rounds):  # interleaved: a fresh table re-times every unit
                        fresh = LatencyTable(backend, batch, 1, repeats=20)
                        preds.append(fresh.predict(model, shape).total_ms)
                        meas.append(measure(model, shape, batch_size=batch, threads=1, repeats=30).median_ms)
                    p, m = statistics.median(preds), statistics.median(meas)
                    spread = (max(meas) - min(meas)) / m * 100
                    rows.append((name, backend, batch, p, m, (p / m - 1) * 100, spread, build_s,
                                 len(table.entries) - 1))
                    print(rows[-1], flush=True)
    roof = []
    for name in args.models:
        model = zoo.create(name).eval()
        shape = zoo.input_shape(name)
        roof.append((name, *(roofline(model, shape, dev).latency_ms for dev in SURVEY_DEVICES.values())))
    load_after = os.getloadavg()
    errors = [abs(r[5]) for r in rows]
    lines = [
        "# Latency lookup tables: predicted vs measured (`slimkit.auto.LatencyTable`)",
        "",
        f"Command: `python benchmarks/latency_lut.py --models {' '.join(args.models)} --batch "
        f"{' '.join(map(str, args.batch))} --rounds {args.rounds}` ({time.time() - started:.0f} s)",
        f"CPU: {cpu_line()}; 1 thread; torch {torch.__version__}.",
        f"Load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} on 2 cores (above about 1, other jobs share them).",
        "",
        "Prediction = sum of per-unit table entries (conv+BN+activation as one unit, every other op",
        "alone) minus the runtime's per-call overhead counted once per extra unit. Each round",
        "re-times every unit with a fresh table, then times the whole model; medians of the rounds.",
        "",
        "| model | backend | batch | predicted ms | measured ms | error | measured spread | table build s | units |",
        "|---|---|---|---|---|---|---|---|---|",
        *[f"| {n} | {b} | {bs} | {p:.3f} | {m:.3f} | {e:+.1f}% | {s:.0f}% | {t:.1f} | {u} |"
          for n, b, bs, p, m, e, s, t, u in rows],
        "",
        f"Mean absolute error {statistics.fmean(errors):.1f}%, worst {max(errors):.1f}% "
        f"({sum(e <= 15 for e in errors)} of {len(errors)} within 15%).",
        "",
        "## Roofline estimate for the survey's device profiles (Table 8; not measurable here)",
        "",
        "| model | " + " | ".join(f"{d} ms" for d in SURVEY_DEVICES) + " |",
        "|---|" + "---|" * len(SURVEY_DEVICES),
        *["| " + " | ".join([r[0], *(f"{v:.2f}" for v in r[1:])]) + " |" for r in roof],
        "",
    ]
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
