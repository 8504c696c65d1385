"""A CLI command for any registered method, generated from its config class: the positional
model, one flag per config field (`slimkit.compress.cliargs`), the data flags, and `--out`.

`slimkit lowrank` and `slimkit distill` are built with it; every method of the registry can be
(`add_method_command(subparsers, "hash", HashConfig, ...)`).
"""

from __future__ import annotations

import argparse
from typing import Any

from slimkit.errors import UserError

__all__ = ["add_method_command", "run_method_command"]


def add_method_command(subparsers: Any, command: str, config_cls: type, help: str,
                       description: str = "") -> argparse.ArgumentParser:
    from slimkit.cli._common import HelpFormatter, add_data_args
    from slimkit.compress.cliargs import add_config_args

    p = subparsers.add_parser(command, help=help, formatter_class=HelpFormatter,
                              description=description or (config_cls.__doc__ or "").strip())
    p.add_argument("checkpoint", help="model file (slimkit train --out) or a zoo model name")
    p.add_argument("--out", required=True,
                   help="where to write the result: a model file (.pt) when the architecture "
                        "is unchanged, else an ONNX file (.onnx)")
    add_config_args(p, config_cls)
    add_data_args(p)
    return p


def run_method_command(args: argparse.Namespace, config_cls: type) -> int:
    """Load the model, apply the method, print its report and accuracy, write `--out`."""
    from slimkit.cli._common import check_out, load_model, make_loader, resolve_task, top1
    from slimkit.compress import Context, compress, spec_of
    from slimkit.compress.cliargs import config_from_args
    from slimkit.pruning.keep import squash
    from slimkit.train import evaluate, save_model

    cfg = config_from_args(config_cls, args)
    spec = spec_of(cfg)
    out = check_out(args.out, "--out", inputs=(args.checkpoint,),
                    suffixes=(".pt", ".pth", ".onnx"))
    if (spec.family == "decompose" or spec.produces in ("quantized", "lowbit", "shared",
                                                        "hashed")) and out.suffix != ".onnx":
        raise UserError(f"--out {out}: {spec.name} changes the layers, so the result is "
                        "written as ONNX; use a .onnx file name")
    loaded = load_model(args.checkpoint)
    if loaded.kind in ("quantized", "onnx"):
        raise UserError(f"{args.checkpoint} is a {loaded.kind} model; {spec.name} needs the "
                        "float model file (.pt)")
    needs_train = "train" in spec.needs or "calib" in spec.needs
    task = resolve_task(args, loaded, required=needs_train)
    shape = tuple(task["input_shape"]) if task else loaded.input_shape
    if shape is None:
        raise UserError(f"no input shape known for {args.checkpoint}: pass --data NAME")
    train = test = None
    if task is not None:
        test = make_loader(task, "test", args.batch_size, args.limit)
        if needs_train:
            train = make_loader(task, "train", args.batch_size, args.limit, train=True)
    teacher = loaded.model if spec.family == "distill" else None
    before = evaluate(loaded.model, test)["top1"] if test is not None else None
    res = compress(loaded.model, cfg, Context(input_shape=shape, train=train, teacher=teacher))
    for key, value in res.report.summary.items():
        print(f"{key}: {value}")
    if res.report.layers:
        print(res.report.table())
    if test is not None:
        print(f"{task['data']}/test: {top1(before)} before, "
              f"{top1(evaluate(res.model, test)['top1'])} after {spec.name}")
    plain = squash(res.model)
    if out.suffix == ".onnx":
        from slimkit.deploy.onnx_export import export_onnx
        from slimkit.deploy.onnx_int8 import export_int8_onnx

        if getattr(plain, "qspec", None):
            export_int8_onnx(plain, shape, out, calib=train)
        else:
            export_onnx(plain, shape, out)
    else:
        try:
            save_model(out, plain, arch=loaded.arch, arch_kwargs=loaded.arch_kwargs, task=task,
                       method=spec.name)
            from slimkit.train import load_model as reload

            reload(out)
        except UserError:
            out.unlink(missing_ok=True)
            raise UserError(f"{spec.name} changed the layers of {loaded.arch}, so the result "
                            f"cannot be stored as a {loaded.arch} model file; write --out "
                            f"FILE.onnx") from None
    print(f"wrote {out}")
    return 0
