"""Accuracy of our W8A8 PTQ, exported and run in onnxruntime, vs onnxruntime's own
``quantize_static`` (MinMax / Entropy / Percentile), same float model and same calibration data.

LeNet-5 on Fashion-MNIST and ResNet-20 on CIFAR-10. Trained checkpoints from
benchmarks/checkpoints/<name>.pt are used when present; otherwise the float model is trained
here briefly on a training subset (stated in the results).

    nice -n 10 python benchmarks/quant_ort_compare.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimkit import data
from slimkit.deploy.onnx_export import OnnxModel, export_onnx
from slimkit.deploy.onnx_int8 import ORT_CALIBRATION, export_int8_onnx, int8_report, ort_quantize_static
from slimkit.quant.ptq import PTQConfig, quantize_ptq

from _checkpoints import train_one_cycle, trained  # same folder

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared" / "datasets"
TASKS = {"lenet5": "fashion-mnist", "resnet20": "cifar10"}


def tensors(ds, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(ds[int(i)] for i in idx))
    return torch.stack(xs), torch.tensor(ys)


def get_model(name: str, train_x: torch.Tensor, train_y: torch.Tensor, epochs: int) -> tuple[nn.Module, str]:
    found = trained(name)
    if found is not None:
        return found
    return (train_one_cycle(name, train_x, train_y, epochs),
            f"trained here: {epochs} epochs on {len(train_x)} training images (SGD, one-cycle)")


def top1(logits: np.ndarray, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y.numpy()).mean())


def run_task(name: str, args, tmp: Path) -> dict:
    ds_name = TASKS[name]
    train = data.load(ds_name, root=str(SHARED), split="train")
    test = data.load(ds_name, root=str(SHARED), split="test")
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(train), generator=g)
    calib_x, _ = tensors(train, perm[:args.calib])
    n_train = args.train_lenet if name == "lenet5" else args.train_resnet
    tr_x, tr_y = tensors(train, perm[args.calib:args.calib + n_train])
    te_x, te_y = tensors(test, torch.randperm(len(test), generator=g)[:args.test])
    shape = tuple(te_x.shape[1:])
    epochs = args.epochs_lenet if name == "lenet5" else args.epochs_resnet
    model, origin = get_model(name, tr_x, tr_y, epochs)
    calib_batches = [calib_x[i:i + 64] for i in range(0, len(calib_x), 64)]
    with torch.no_grad():
        f_logits = torch.cat([model(te_x[i:i + 256]) for i in range(0, len(te_x), 256)]).numpy()
    rows = [("float32 (torch)", top1(f_logits, te_y), 1.0, "-")]
    f_path = export_onnx(model, shape, tmp / f"{name}.onnx")
    rows.append(("float32 (onnxruntime)", top1(OnnxModel(f_path).run(te_x.numpy()), te_y),
                 float((OnnxModel(f_path).run(te_x.numpy()).argmax(1) == f_logits.argmax(1)).mean()), "-"))
    for observer in args.observers:
        cfg = PTQConfig(weight_bits=8, act_bits=8, observer=observer, per_channel=True)
        sim = quantize_ptq(model, cfg, calib_batches)
        with torch.no_grad():
            s_logits = torch.cat([sim(te_x[i:i + 256]) for i in range(0, len(te_x), 256)]).numpy()
        q_path = export_int8_onnx(sim, shape, tmp / f"{name}.{observer}.onnx", calib=calib_batches)
        o_logits = OnnxModel(q_path).run(te_x.numpy())
        rep = int8_report(q_path)
        rows.append((f"ours W8A8 PTQ ({observer}), simulated in torch", top1(s_logits, te_y),
                     float((s_logits.argmax(1) == f_logits.argmax(1)).mean()), "-"))
        rows.append((f"ours W8A8 PTQ ({observer}), int8 in onnxruntime", top1(o_logits, te_y),
                     float((o_logits.argmax(1) == f_logits.argmax(1)).mean()),
                     f"{rep.mac_int8} int8 / {len(rep.mac_float)} float"))
    for method in args.methods:
        t = time.time()
        o_path = ort_quantize_static(f_path, [b.numpy() for b in calib_batches], method, tmp / f"{name}.ort_{method}.onnx")
        o_logits = OnnxModel(o_path).run(te_x.numpy())
        rep = int8_report(o_path)
        rows.append((f"onnxruntime quantize_static ({method}), int8", top1(o_logits, te_y),
                     float((o_logits.argmax(1) == f_logits.argmax(1)).mean()),
                     f"{rep.mac_int8} int8 / {len(rep.mac_float)} float"))
        print(f"  {method}: {time.time() - t:.0f}s", flush=True)
    return dict(name=name, data=ds_name, origin=origin, rows=rows)


def write(results: list[dict], cmd: str, args, seconds: float, out: Path) -> None:
    lines = ["# W8A8 PTQ accuracy in onnxruntime: ours vs onnxruntime's quantize_static", "",
             f"Command: `{cmd}`", "",
             f"Setup: {args.test} test images (seeded subset), the same {args.calib} training images calibrate "
             "every method (ours: `quantize_ptq` W8 per-channel symmetric, A8 affine with the named observer, "
             "exported as QDQ with our scales + calibrated requantization of residual outputs; onnxruntime: "
             "`quantize_static`, QDQ, per-channel int8 weights, int8 activations, its pre-processing). "
             f"1 torch thread, CPU. Total run time {seconds:.0f} s. 'agree' = argmax agreement with the float "
             "model; 'conv/matmul' = nodes onnxruntime runs in int8 vs float after its graph optimisations.", ""]
    for r in results:
        lines += [f"## {r['name']} on {r['data']} ({r['origin']})", "",
                  "| variant | top-1 | agree with float | conv/matmul |", "|---|---:|---:|---|"]
        lines += [f"| {v} | {a * 100:.2f}% | {g * 100:.1f}% | {c} |" for v, a, g, c in r["rows"]]
        lines.append("")
    out.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--calib", type=int, default=512)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--train-lenet", type=int, default=20000)
    p.add_argument("--epochs-lenet", type=int, default=3)
    p.add_argument("--train-resnet", type=int, default=10000)
    p.add_argument("--epochs-resnet", type=int, default=3)
    p.add_argument("--observers", nargs="+", default=["minmax", "percentile"])
    p.add_argument("--methods", nargs="+", default=ORT_CALIBRATION.names())
    p.add_argument("--out", default=str(ROOT / "results" / "quant_ort_compare.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            print(f"[{time.time() - t0:.0f}s] {name}", flush=True)
            results.append(run_task(name, args, Path(tmp)))
    cmd = "nice -n 10 python benchmarks/quant_ort_compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write(results, cmd.strip(), args, time.time() - t0, Path(args.out))
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
