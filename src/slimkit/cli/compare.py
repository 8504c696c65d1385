"""`slimkit compare ORIGINAL COMPRESSED`: the survey's six ratios and a composite."""

from __future__ import annotations

import argparse

from slimkit.cli._common import add_data_args, load_model_or_arch, make_loader, parse_shape


def parse_weights(text: str) -> dict[str, float]:
    """'r_A=2,r_p=1' -> {'r_A': 2.0, 'r_p': 1.0}."""
    weights = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--weights items look like r_A=1, got {item!r}")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--weights: {value!r} is not a number") from None
    return weights


def _measure_deployed(model, shape, loader):
    """Measure `model` as it deploys: a quantized model's bits feed the energy model and its
    latency is that of its int8 export in onnxruntime, not of the float simulation."""
    import dataclasses
    import tempfile

    from slimkit.deploy.onnx_int8 import int8_runtime, quantized_bits
    from slimkit.metrics import measure, measure_latency
    from slimkit.train import evaluate

    bits = quantized_bits(model)
    wbits, abits = bits or (32, 32)
    m = measure(model, shape, loader, evaluate, skip_zeros=True, weight_bits=wbits,
                act_bits=abits, latency=bits is None)
    if bits is None:
        return m
    with tempfile.TemporaryDirectory(prefix="slimkit-compare-") as tmp:
        runtime = int8_runtime(model, shape, f"{tmp}/int8.onnx", calib=loader)
        return dataclasses.replace(m, latency_ms=measure_latency(runtime, shape).median_ms)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="six ratios of a compressed model to its original",
                              description="Measure two model files and print r_A, r_p, r_T, "
                              "r_c, r_E, r_D and their weighted composite.")
    p.add_argument("original", help="model file (or zoo name) of the original")
    p.add_argument("compressed", help="model file of the compressed model")
    p.add_argument("--input-shape", default=None, help="C,H,W (default: the data set's)")
    p.add_argument("--weights", default="r_A=1,r_p=1,r_T=1,r_c=1,r_E=1,r_D=0",
                   help="composite weights, e.g. r_A=3,r_T=1 (lower composite is better)")
    p.add_argument("--out", default=None, help="folder for report.md/.csv/.json/.png")
    add_data_args(p)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from slimkit import data
    from slimkit.deploy.onnx_int8 import quantized_bits
    from slimkit.metrics import Report, measure, onnx_latency
    from slimkit.train import evaluate

    weights = parse_weights(args.weights)
    shape = parse_shape(args.input_shape) if args.input_shape else data.input_shape(args.data)
    test = make_loader(args, "test")
    report = Report(title=f"{args.compressed} vs {args.original}", weights=weights)
    original, _ = load_model_or_arch(args.original)
    compressed, _ = load_model_or_arch(args.compressed)
    base = measure(original, shape, test, evaluate)
    if quantized_bits(compressed) is not None:  # same runtime on both sides of r_T
        base = dataclasses.replace(base, latency_ms=onnx_latency(original, shape).median_ms)
        print("latency: both models in onnxruntime (the original in fp32, the quantized one "
              "as its int8 QDQ export)")
    report.add(args.original, "original", base, baseline=base)
    report.add(args.compressed, "compressed", _measure_deployed(compressed, shape, test),
               baseline=base)
    print(report.to_markdown())
    if args.out:
        paths = report.write(args.out)
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0
