"""`slimkit quantize MODEL --bits 8 --out int8.onnx`: post-training quantization of a saved
model, written as what a user deploys.

`--out X.onnx` (the default kind) writes the int8 QDQ ONNX model (onnxruntime runs it with
int8 kernels; `slimkit evaluate`/`compare` read it); `--out X.safetensors` writes the
simulated model instead (`slimkit.quant.qfile.load_quantized` reads it). Where weights have
fewer than 8 bits, the packed sub-8-bit file is written too (`--packed-out`, default
`X.packed.safetensors`). The command prints float vs quantized accuracy on the model's own
test split and the file sizes.

Methods: `ptq` (flags below), a preset (`int8`, `banner_w4a8`, `dfq_int8`) or `mixed`
(per-layer bits under `--budget-bits`). `--qspec FILE` also writes the per-layer bits /
scales / zero points as JSON, `--report FILE` a per-layer SQNR table (markdown).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from slimkit.cli._common import (HelpFormatter, add_data_args, check_out, positive_float,
                                 positive_int)
from slimkit.errors import UserError

SUFFIXES = (".onnx", ".safetensors")
_FLAGS = {"weight_bits": "--bits", "act_bits": "--act-bits", "unknown observer": "--observer: "
          "unknown observer", "unknown weight observer": "--weight-observer: unknown observer",
          "skip": "--skip", "bits": "--bits", "budget_bits": "--budget-bits"}


def _bits(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not (2 <= value <= 8 or low == 0 and value == 0):
            raise argparse.ArgumentTypeError(
                f"expected {'0 (float) or ' if low == 0 else ''}2..8 bits, got {text!r} "
                "(the deployed int8 model holds at most 8 bits)")
        return value
    return parse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quantize", help="post-training quantization to an int8 ONNX model (PTQ, DFQ, mixed)",
        formatter_class=HelpFormatter,
        description="Quantize a saved model with a small unlabeled calibration set from its "
        "own training split; write the int8 ONNX model (and the packed file below 8 bits).")
    p.add_argument("checkpoint", help="model file (slimkit train --out) or a zoo name with --data")
    from slimkit.cli._names import QUANT_OBSERVERS, QUANT_PRESETS

    p.add_argument("--method", default="ptq",
                   help=f"ptq, mixed or a preset: {', '.join(QUANT_PRESETS.names())}")
    p.add_argument("--bits", type=_bits(2), default=8, help="weight bits (2..8)")
    p.add_argument("--act-bits", type=_bits(0), default=8,
                   help="activation bits (2..8); 0 keeps activations float")
    p.add_argument("--observer", default="minmax",
                   help=f"activation observer: {', '.join(QUANT_OBSERVERS.names())}")
    p.add_argument("--weight-observer", default="minmax", help="weight observer (same names)")
    p.add_argument("--per-tensor", action="store_true",
                   help="one weight scale per tensor (default: per channel)")
    p.add_argument("--bias-correction", default="none", choices=["none", "empirical", "analytic"],
                   help="bias correction")
    p.add_argument("--equalize", action="store_true", help="cross-layer equalization (DFQ)")
    p.add_argument("--skip", action="append", default=[],
                   help="layer glob left in float (repeatable; default: none)")
    p.add_argument("--budget-bits", type=positive_float, default=6.0,
                   help="mean weight bits for --method mixed")
    p.add_argument("--calib-size", type=positive_int, default=512,
                   help="calibration images from the training split")
    p.add_argument("--out", required=True,
                   help="file to write: X.onnx (int8 ONNX model) or X.safetensors (simulated)")
    p.add_argument("--packed-out", default=None,
                   help="packed sub-8-bit weight file, written when weights have < 8 bits "
                   "(default: X.packed.safetensors beside --out)")
    p.add_argument("--qspec", default=None, help="also write the qspec JSON here (default: no)")
    p.add_argument("--report", default=None,
                   help="also write a per-layer SQNR table (markdown) here (default: no)")
    add_data_args(p, limit_help="score on N test images and calibrate on N training images "
                  "at most")


def _config(args: argparse.Namespace):
    from slimkit.quant.mixed import MixedConfig
    from slimkit.quant.observers import OBSERVERS
    from slimkit.quant.ptq import PRESETS, PTQConfig

    methods = ("ptq", "mixed", *PRESETS.names())
    if args.method not in methods:
        raise UserError(f"--method: unknown method {args.method!r}; known: {', '.join(methods)}")
    for flag, name in (("--observer", args.observer), ("--weight-observer", args.weight_observer)):
        if name not in OBSERVERS.names():
            raise UserError(f"{flag}: unknown observer {name!r}; known: "
                            f"{', '.join(OBSERVERS.names())}")
    bc = {"none": False, "empirical": "empirical", "analytic": "analytic"}[args.bias_correction]
    try:
        ptq = PTQConfig(weight_bits=args.bits, act_bits=args.act_bits or None,
                        observer=args.observer, weight_observer=args.weight_observer,
                        per_channel=not args.per_tensor, bias_correction=bc,
                        equalize=args.equalize, exclude=tuple(args.skip))
        if args.method == "ptq":
            return ptq, ptq
        if args.method == "mixed":
            if not 2 <= args.budget_bits <= 8:
                raise UserError(f"--budget-bits must be in [2, 8], got {args.budget_bits}")
            cfg = MixedConfig(budget_bits=args.budget_bits, act_bits=args.act_bits or None,
                              base=ptq, calib_size=min(args.calib_size, 256))
            return cfg, ptq
        preset = PRESETS.get(args.method)()
        return preset, preset
    except UserError:
        raise
    except (ValueError, KeyError) as exc:
        msg = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)
        for key, flag in _FLAGS.items():
            if msg.startswith(key):
                msg = flag + msg[len(key):]
                break
        raise UserError(msg) from None


def _packed_path(args: argparse.Namespace) -> Path:
    if args.packed_out:
        return Path(args.packed_out)
    out = Path(args.out)
    return out.with_name(out.stem + ".packed.safetensors")


def _check_outputs(args: argparse.Namespace) -> None:
    """Every output path refused before calibration starts."""
    check_out(args.out, "--out", inputs=(args.checkpoint,), suffixes=SUFFIXES)
    if Path(args.out).suffix.lower() == ".onnx" and args.act_bits not in (0, 8):
        raise UserError(f"--act-bits {args.act_bits}: the int8 ONNX model runs 8-bit (or float) "
                        "activations; use --act-bits 8, or write the simulated model with "
                        "--out X.safetensors")
    taken = {Path(args.out).resolve(): "--out"}
    extra = [("--qspec", args.qspec), ("--report", args.report)]
    if args.packed_out or args.bits < 8 or args.method in ("mixed", "banner_w4a8"):
        extra.append(("--packed-out", str(_packed_path(args))))
    for flag, path in extra:
        if path is None:
            continue
        check_out(path, flag, inputs=(args.checkpoint,),
                  suffixes=(".safetensors",) if flag == "--packed-out" else None)
        where = Path(path).resolve()
        if where in taken:
            raise UserError(f"{flag} {path} is also {taken[where]}; give each output its own "
                            "file")
        taken[where] = flag


def _write_onnx(qmodel, shape, out: Path, calib, meta: dict[str, str]) -> None:
    """Export the int8 QDQ model and store slimkit's metadata in it (atomic replace)."""
    import tempfile

    import onnx

    from slimkit.deploy.onnx_int8 import export_int8_onnx
    from slimkit.fileio import atomic_write

    with tempfile.TemporaryDirectory(prefix="slimkit-quantize-") as tmp:
        raw = export_int8_onnx(qmodel, shape, Path(tmp) / "int8.onnx", calib=calib)
        proto = onnx.load(str(raw))
    for key, value in meta.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    atomic_write(out, proto.SerializeToString())


def _check_model(args: argparse.Namespace, loaded) -> None:
    """Before calibration: every --skip glob names a layer, and a channel-pruned model is not
    written as a simulated .safetensors file (that format rebuilds the unpruned zoo model)."""
    from fnmatch import fnmatch

    from torch import nn

    from slimkit import zoo
    from slimkit.train import channel_spec

    layers = [n for n, m in loaded.model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for glob in args.skip:
        if not any(fnmatch(name, glob) or name.startswith(glob + ".") for name in layers):
            raise UserError(f"--skip {glob!r} matches no conv/linear layer; layers: "
                            f"{', '.join(layers)}")
    if Path(args.out).suffix.lower() == ".safetensors" and loaded.kind == "model":
        plain = zoo.create(loaded.arch, **loaded.arch_kwargs)
        if channel_spec(plain) != channel_spec(loaded.model):
            raise UserError(f"{args.checkpoint} is channel-pruned; the simulated .safetensors "
                            "file cannot hold it yet: write the int8 model with --out X.onnx")


def _float_bytes(loaded) -> tuple[int, str]:
    if loaded.path is not None:
        return loaded.path.stat().st_size, str(loaded.path)
    return sum(p.numel() * 4 for p in loaded.model.parameters()), f"{loaded.arch} fp32 weights"


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from slimkit import data
    from slimkit.cli._common import (ONNX_ARCH_KEY, ONNX_MACS_KEY, ONNX_TASK_KEY,
                                     check_finite_batches, check_fits, load_model, load_split,
                                     make_loader, resolve_task, top1)
    from slimkit.deploy.packed_file import write_packed
    from slimkit.metrics import count_macs
    from slimkit.quant.api import quantize
    from slimkit.quant.core import qspec_to_json
    from slimkit.quant.diagnostics import layer_sqnr, to_markdown
    from slimkit.train import evaluate

    config, ptq_for_file = _config(args)
    _check_outputs(args)
    loaded = load_model(args.checkpoint)
    if loaded.kind in ("quantized", "onnx"):
        raise UserError(f"{args.checkpoint} is already quantized; quantize the float model "
                        "file (.pt)")
    _check_model(args, loaded)
    task = resolve_task(args, loaded)
    shape = tuple(task["input_shape"])
    test = make_loader(task, "test", args.batch_size, args.limit)
    model = loaded.model.eval()
    check_fits(model, test, task, args.checkpoint)
    n_calib = min(args.calib_size, args.limit or args.calib_size)
    train = load_split(task, "train")
    calib_set = data.subset(train, min(n_calib, len(train)), seed=0)
    calib = [x for x, _ in data.loader(calib_set, batch_size=64)]
    check_finite_batches(calib, f"{task['data']}/train")

    print(f"calibrating {args.method} on {sum(len(x) for x in calib)} {task['data']} "
          "training images ...", flush=True)
    qmodel = quantize(model, config, calib=calib)
    if hasattr(qmodel, "bit_assignment"):
        ptq_for_file = dataclasses.replace(ptq_for_file, layer_bits=qmodel.bit_assignment)
    wbits = max(int(e["weight_bits"]) for e in qmodel.qspec.values())
    minbits = min(int(e["weight_bits"]) for e in qmodel.qspec.values())
    out = Path(args.out)
    float_acc = evaluate(model, test)["top1"]
    sizes = []
    if out.suffix.lower() == ".onnx":
        from slimkit.deploy.onnx_export import OrtModule

        macs = count_macs(qmodel, shape, skip_zeros=True).total
        _write_onnx(qmodel, shape, out, calib, {
            ONNX_TASK_KEY: json.dumps(task, sort_keys=True), ONNX_ARCH_KEY: loaded.arch,
            ONNX_MACS_KEY: str(macs), "slimkit.weight_bits": str(wbits)})
        q_acc = evaluate(OrtModule(out, threads=1), test)["top1"]
        label = "int8 ONNX in onnxruntime"
        sizes.append((f"int8 ONNX ({wbits}-bit weights)" if wbits < 8 else "int8 ONNX", out))
    else:
        from slimkit.quant.qfile import save_quantized

        save_quantized(out, qmodel, arch=loaded.arch, config=ptq_for_file,
                       arch_kwargs=loaded.arch_kwargs)
        q_acc = evaluate(qmodel, test)["top1"]
        label = "simulated quantized"
        sizes.append(("simulated (float tensors)", out))
    if minbits < 8:
        packed = write_packed(_packed_path(args), qmodel, arch=loaded.arch,
                              arch_kwargs=loaded.arch_kwargs, task=task)
        sizes.append((f"packed {minbits}-bit" if minbits == wbits
                      else f"packed {minbits}..{wbits}-bit", packed))
    if args.qspec:
        Path(args.qspec).write_text(qspec_to_json(qmodel.qspec))
        print(f"wrote {args.qspec}")
    if args.report:
        Path(args.report).write_text(to_markdown(layer_sqnr(qmodel, calib[:4])) + "\n")
        print(f"wrote {args.report}")

    n = len(test.dataset)
    print(f"{task['data']}/test (n={n}): float {top1(float_acc)}, {label} {top1(q_acc)} "
          f"({100 * (q_acc - float_acc):+.2f} points)")
    fbytes, fname = _float_bytes(loaded)
    print(f"float: {fbytes:,} bytes ({fname})")
    for what, path in sizes:
        size = path.stat().st_size
        print(f"{what}: {size:,} bytes, {fbytes / size:.1f}x smaller ({path})")
    return 0
