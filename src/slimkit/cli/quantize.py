"""`slimkit quantize CHECKPOINT --method ptq --bits 8 --act-bits 8 --observer kl
--calib-data NAME --calib-size 512 --out FILE`: post-training quantization of a saved model.

Methods: `ptq` (flags below), a preset (`int8`, `banner_w4a8`, `dfq_int8`) or `mixed`
(per-layer bits under `--budget-bits`). The output is a safetensors file
(`slimkit.quant.qfile.load_quantized` reads it); `--qspec FILE` also writes the per-layer
bits / scales / zero points as JSON, `--report FILE` a per-layer SQNR table (markdown).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from slimkit.errors import UserError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from slimkit.cli._names import QUANT_OBSERVERS as OBSERVERS
    from slimkit.cli._names import QUANT_PRESETS as PRESETS

    methods = ["ptq", "mixed", *PRESETS.names()]
    p = subparsers.add_parser(
        "quantize",
        help="post-training quantization (PTQ, DFQ, mixed precision)",
        description="Quantize a saved model with a small unlabeled calibration set.",
    )
    p.add_argument("checkpoint", help="model file (slimkit train --out) or a zoo model name")
    p.add_argument("--method", default="ptq", help=f"one of: {', '.join(methods)}")
    p.add_argument("--bits", type=int, default=8, help="weight bits (default 8)")
    p.add_argument(
        "--act-bits", type=int, default=8, help="activation bits; 0 keeps activations float"
    )
    p.add_argument(
        "--observer", default="minmax", help=f"activation observer: {', '.join(OBSERVERS.names())}"
    )
    p.add_argument("--weight-observer", default="minmax", help="weight observer (same names)")
    p.add_argument(
        "--per-tensor",
        action="store_true",
        help="one weight scale per tensor (default per channel)",
    )
    p.add_argument("--bias-correction", default="none", choices=["none", "empirical", "analytic"])
    p.add_argument("--equalize", action="store_true", help="cross-layer equalization (DFQ)")
    p.add_argument(
        "--skip", action="append", default=[], help="layer glob left in float (repeatable)"
    )
    p.add_argument(
        "--budget-bits", type=float, default=6.0, help="mean weight bits for --method mixed"
    )
    p.add_argument(
        "--calib-data", default="mnist5k", help="data set for calibration (labels unused)"
    )
    p.add_argument("--root", default=None, help="folder or archive holding the data set")
    p.add_argument("--calib-size", type=int, default=512, help="calibration images (default 512)")
    p.add_argument("--eval-size", type=int, default=0, help="also report top-1 on N test images")
    p.add_argument("--out", required=True, help="where to write the quantized model (.safetensors)")
    p.add_argument("--qspec", default=None, help="also write the qspec JSON here")
    p.add_argument(
        "--report", default=None, help="also write a per-layer SQNR table (markdown) here"
    )


def _config(args: argparse.Namespace):
    from slimkit.quant.mixed import MixedConfig
    from slimkit.quant.ptq import PRESETS, PTQConfig

    bc = {"none": False, "empirical": "empirical", "analytic": "analytic"}[args.bias_correction]
    ptq = PTQConfig(
        weight_bits=args.bits,
        act_bits=args.act_bits or None,
        observer=args.observer,
        weight_observer=args.weight_observer,
        per_channel=not args.per_tensor,
        bias_correction=bc,
        equalize=args.equalize,
        skip=tuple(args.skip),
    )
    if args.method == "ptq":
        return ptq, ptq
    if args.method == "mixed":
        cfg = MixedConfig(
            budget_bits=args.budget_bits,
            act_bits=args.act_bits or None,
            base=ptq,
            calib_size=min(args.calib_size, 256),
        )
        return cfg, ptq
    if args.method in PRESETS:
        preset = PRESETS.get(args.method)()
        return preset, preset
    raise UserError(
        f"unknown method {args.method!r}; known: ptq, mixed, {', '.join(PRESETS.names())}"
    )


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from slimkit import data
    from slimkit.cli._common import load_model_or_arch
    from slimkit.quant.api import quantize
    from slimkit.quant.core import qspec_to_json
    from slimkit.quant.diagnostics import layer_sqnr, to_markdown
    from slimkit.quant.qfile import save_quantized

    if args.calib_size < 1:
        raise UserError(f"--calib-size must be positive, got {args.calib_size}")
    config, ptq_for_file = _config(args)
    train = data.load(args.calib_data, root=args.root, split="train")
    calib_set = data.subset(train, min(args.calib_size, len(train)), seed=0)
    calib = [x for x, _ in data.loader(calib_set, batch_size=64)]
    c, h, w = calib[0].shape[1:]
    model, arch = load_model_or_arch(
        args.checkpoint, num_classes=data.num_classes(args.calib_data), in_channels=c
    )
    qmodel = quantize(model.eval(), config, calib=calib)
    if hasattr(qmodel, "bit_assignment"):
        ptq_for_file = dataclasses.replace(ptq_for_file, layer_bits=qmodel.bit_assignment)
    arch_kwargs = {"num_classes": data.num_classes(args.calib_data), "in_channels": c}
    out = save_quantized(args.out, qmodel, arch=arch, config=ptq_for_file, arch_kwargs=arch_kwargs)
    bits = {n: (e["weight_bits"], e["act_bits"]) for n, e in qmodel.qspec.items()}
    print(f"quantized {len(bits)} layers with {type(config).__name__}; wrote {out}")
    if args.qspec:
        Path(args.qspec).write_text(qspec_to_json(qmodel.qspec))
    if args.report:
        Path(args.report).write_text(to_markdown(layer_sqnr(qmodel, calib[:4])) + "\n")
    if args.eval_size > 0:
        test = data.subset(
            data.load(args.calib_data, root=args.root, split="test"), args.eval_size, seed=0
        )
        correct = {"float": 0, "quantized": 0}
        n = 0
        with torch.no_grad():
            for x, y in data.loader(test, batch_size=256):
                correct["float"] += int((model(x).argmax(1) == y).sum())
                correct["quantized"] += int((qmodel(x).argmax(1) == y).sum())
                n += len(y)
        print(
            f"top-1 on {n} test images: float {correct['float'] / n:.4f}, quantized {correct['quantized'] / n:.4f}"
        )
    return 0
