"""`slimkit compare ORIGINAL COMPRESSED`: the survey's six ratios and a composite.

Both models must take the same inputs and predict the same classes (checked before any
measurement); the data set defaults to the one stored in the model files.
"""

from __future__ import annotations

import argparse

from slimkit.cli._common import (HelpFormatter, add_data_args, check_fits, check_out,
                                 check_shape_fits, load_model, make_loader, parse_shape,
                                 resolve_task)
from slimkit.errors import UserError

RATIOS = ("r_A", "r_p", "r_T", "r_c", "r_E", "r_D")


def parse_weights(text: str) -> dict[str, float]:
    """'r_A=2,r_p=1' -> {'r_A': 2.0, 'r_p': 1.0}."""
    import math

    weights = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--weights items look like r_A=1, got {item!r}")
        name = name.strip()
        if name not in RATIOS:
            raise UserError(f"--weights: unknown ratio {name!r}; known: {', '.join(RATIOS)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise UserError(f"--weights: {value!r} is not a number") from None
        if not math.isfinite(weights[name]) or weights[name] < 0:
            raise UserError(f"--weights: {name} must be a finite number >= 0, got {value!r}")
    if not weights:
        raise UserError("--weights: give at least one ratio, e.g. r_A=1")
    return weights


def _measure_deployed(model, shape, loader, tmp):
    """Measure `model` as it deploys, latency aside: a quantized model's bits feed the energy
    model. Returns (measurement, what to time): a quantized model is timed as its int8 export
    in onnxruntime, not as the float simulation."""
    from slimkit.deploy.onnx_int8 import int8_runtime, quantized_bits
    from slimkit.metrics import measure
    from slimkit.train import evaluate

    bits = quantized_bits(model)
    wbits, abits = bits or (32, 32)
    m = measure(model, shape, loader, evaluate, skip_zeros=True, weight_bits=wbits,
                act_bits=abits, latency=False)
    if bits is None:
        return m, model
    return m, int8_runtime(model, shape, f"{tmp}/int8.onnx", calib=loader)


def _measure_onnx(loaded, loader):
    """An ONNX file as deployed: its accuracy in onnxruntime, its size on disk, and the MACs
    recorded by `slimkit quantize` (None for a foreign ONNX file); timed by the caller."""
    from slimkit.cli._common import ONNX_MACS_KEY
    from slimkit.metrics import Measurement
    from slimkit.train import evaluate

    macs = loaded.meta.get(ONNX_MACS_KEY)
    return Measurement(
        accuracy=evaluate(loaded.model, loader)["top1"],
        param_bytes=loaded.model.storage_bytes(),
        latency_ms=None,
        macs=int(macs) if macs and str(macs).isdigit() else None,
        index_bits=0,
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare", help="six ratios of a compressed model to its original",
        formatter_class=HelpFormatter,
        description="Measure two model files and print r_A, r_p, r_T, r_c, r_E, r_D and their "
        "weighted composite. The compressed model may be the .onnx file `slimkit quantize` "
        "writes (measured in onnxruntime).")
    p.add_argument("original", help="model file (or zoo name) of the original")
    p.add_argument("compressed", help="model file of the compressed model (.pt, .onnx, "
                   ".safetensors)")
    p.add_argument("--input-shape", default=None,
                   help="C,H,W (default: the data set's)")
    p.add_argument("--weights", default="r_A=1,r_p=1,r_T=1,r_c=1,r_E=1,r_D=0",
                   help="composite weights, e.g. r_A=3,r_T=1 (lower composite is better)")
    p.add_argument("--any-arch", action="store_true",
                   help="allow a compressed model of another architecture (a distilled student)")
    p.add_argument("--out", default=None,
                   help="folder for report.md/.csv/.json/.png (default: print only)")
    add_data_args(p)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import tempfile

    from slimkit.deploy.onnx_export import export_onnx
    from slimkit.deploy.onnx_int8 import quantized_bits
    from slimkit.metrics import Report, measure
    from slimkit.metrics.latency import paired_latency
    from slimkit.train import evaluate

    weights = parse_weights(args.weights)
    if args.out:
        check_out(args.out, "--out", inputs=(args.original, args.compressed), folder=True)
    original = load_model(args.original)
    compressed = load_model(args.compressed)
    if original.kind == "onnx":
        raise UserError(f"{args.original}: the original must be a .pt model file or a zoo name "
                        "(an ONNX file is the deployed, compressed side)")
    if args.data is None and original.task is None and compressed.task is not None:
        original.task = compressed.task  # a zoo original borrows the compressed model's task
    task = resolve_task(args, original)
    if compressed.task is not None and args.data is None:
        if (tuple(compressed.task["input_shape"]), compressed.task["num_classes"]) != \
                (tuple(task["input_shape"]), task["num_classes"]):
            raise UserError(
                f"{args.compressed} was trained on {compressed.task['data']} "
                f"{tuple(compressed.task['input_shape'])} with {compressed.task['num_classes']} "
                f"classes, {args.original} on {task['data']} {tuple(task['input_shape'])} with "
                f"{task['num_classes']}: compare models of one task")
    if compressed.task is not None and args.data is not None:
        resolve_task(args, compressed)  # the same shape/class check for the other side
    shape = parse_shape(args.input_shape) if args.input_shape else tuple(task["input_shape"])
    test = make_loader(task, "test", args.batch_size, args.limit)
    for side, loaded in (("original", original), ("compressed", compressed)):
        if args.input_shape:
            check_shape_fits(loaded.model, shape, f"{side} {loaded.source}")
        check_fits(loaded.model, test, task, f"{side} {loaded.source}")
    if compressed.arch and original.arch != compressed.arch and not args.any_arch:
        raise UserError(f"{args.original} is {original.arch} but {args.compressed} is "
                        f"{compressed.arch}; pass --any-arch to compare different "
                        "architectures (e.g. a distilled student)")
    report = Report(title=f"{args.compressed} vs {args.original}", weights=weights)
    base = measure(original.model, shape, test, evaluate, latency=False)
    with tempfile.TemporaryDirectory(prefix="slimkit-compare-") as tmp:
        if compressed.kind == "onnx":
            measured, runtime = _measure_onnx(compressed, test), compressed.model
        else:
            measured, runtime = _measure_deployed(compressed.model, shape, test, tmp)
        reference = original.model
        if compressed.kind == "onnx" or quantized_bits(compressed.model) is not None:
            reference = str(export_onnx(original.model, shape, f"{tmp}/original.onnx"))
            print("latency: both models in onnxruntime (the original in fp32, the compressed one "
                  "as deployed in int8)")
        # one protocol: pinned threads, warm-up, interleaved rounds, paired median ratio
        lo, lc, r_t = paired_latency(reference, runtime, shape)
    base = dataclasses.replace(base, latency_ms=lo.median_ms)
    measured = dataclasses.replace(measured, latency_ms=lc.median_ms)
    report.add(args.original, "original", base, baseline=base)
    report.add(args.compressed, "compressed", measured, baseline=base, latency=r_t)
    print(report.to_markdown())
    print(f"latency: {lo.median_ms:.3f} vs {lc.median_ms:.3f} ms, r_T {r_t.value:.3f} "
          f"(paired over {r_t.rounds} interleaved rounds, spread {100 * r_t.spread:.0f}%, "
          f"{lo.threads} thread{'s' if lo.threads > 1 else ''})"
          + ("" if r_t.stable else f"; r_T not reported: {r_t.reason}"))
    if args.out:
        paths = report.write(args.out)
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0
