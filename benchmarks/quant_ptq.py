"""PTQ accuracy per observer and bit width, with and without bias correction, next to
onnxruntime's `quantize_static` (int8, QDQ, per-channel) on the same calibration data.

LeNet-5 on Fashion-MNIST and ResNet-20 on CIFAR-10. Trained checkpoints
(benchmarks/checkpoints/lenet5_fashion.pt, resnet20_cifar10.pt) are used when present;
otherwise the float model is trained here briefly on a training subset (stated in the
results) and cached under /tmp/slimkit_quant_bench.

    nice -n 10 python benchmarks/quant_ptq.py
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

from slimkit import data, zoo
from slimkit.quant.observers import OBSERVERS
from slimkit.quant.ptq import PRESETS, PTQConfig, quantize_ptq

from _checkpoints import train_one_cycle, trained  # same folder
from _host import cpu_line, uptime  # same folder

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared" / "datasets"
CACHE = Path("/tmp/slimkit_quant_bench")
TASKS = {
    "lenet5": ("fashion-mnist", "lenet5_fashion.pt"),
    "resnet20": ("cifar10", "resnet20_cifar10.pt"),
}
BITS = {"W8A8": (8, 8), "W4A8": (4, 8), "W4A4": (4, 4), "W2A8": (2, 8)}


def tensors(ds, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(ds[int(i)] for i in idx))
    return torch.stack(xs), torch.tensor(ys)


def get_model(
    name: str, ckpt_name: str, train, skip: int, n_train: int, epochs: int
) -> tuple[nn.Module, str]:
    found = trained(name)
    if found is not None:
        return found
    cached = CACHE / f"{name}_{n_train}_{epochs}.pt"
    model = zoo.create(name, num_classes=10, in_channels=train[0][0].shape[0])
    origin = f"trained here: {epochs} epochs on {n_train} training images (SGD one-cycle), no checkpoint found"
    if cached.is_file():
        model.load_state_dict(torch.load(cached, weights_only=True))
        return model.eval(), origin
    g = torch.Generator().manual_seed(1)
    idx = torch.randperm(len(train), generator=g)[:n_train]
    x, y = tensors(train, idx)
    model = train_one_cycle(name, x, y, epochs)
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cached)
    return model, origin


@torch.no_grad()
def top1(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    logits = torch.cat([model(x[i : i + 500]) for i in range(0, len(x), 500)])
    return float((logits.argmax(1) == y).float().mean())


def ort_rows(
    model: nn.Module, shape, calib: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, tmp: Path
) -> list[tuple[str, float]]:
    try:
        from slimkit.deploy.onnx_export import OnnxModel, export_onnx
        from slimkit.deploy.onnx_int8 import ORT_CALIBRATION, ort_quantize_static
    except ImportError as exc:  # the deployment package is optional here
        print(f"onnxruntime comparison skipped: {exc}", file=sys.stderr)
        return []
    f_path = export_onnx(model, shape, tmp / "float.onnx")
    rows = []
    for method in ORT_CALIBRATION.names():
        o_path = ort_quantize_static(
            f_path, [b.numpy() for b in calib], method, tmp / f"ort_{method}.onnx"
        )
        logits = OnnxModel(o_path).run(x.numpy())
        rows.append(
            (
                f"onnxruntime quantize_static ({method}), W8A8 per-channel QDQ",
                float((torch.from_numpy(np.asarray(logits)).argmax(1) == y).float().mean()),
            )
        )
    return rows


def run_task(name: str, args) -> dict:
    ds_name, ckpt_name = TASKS[name]
    train = data.load(ds_name, root=str(SHARED), split="train")
    test = data.load(ds_name, root=str(SHARED), split="test")
    g = torch.Generator().manual_seed(0)
    calib_x, _ = tensors(train, torch.randperm(len(train), generator=g)[: args.calib])
    n_test = args.test_lenet if name == "lenet5" else args.test_resnet
    te_idx = torch.randperm(len(test), generator=g)[:n_test]
    te_x, te_y = tensors(test, te_idx)
    n_train = args.train_lenet if name == "lenet5" else args.train_resnet
    epochs = args.epochs_lenet if name == "lenet5" else args.epochs_resnet
    model, origin = get_model(name, ckpt_name, train, args.calib, n_train, epochs)
    calib = [calib_x[i : i + 64] for i in range(0, len(calib_x), 64)]
    t0 = time.time()
    float_acc = top1(model, te_x, te_y)
    table: dict[tuple[str, str, bool], float] = {}
    for observer in args.observers:
        for label in args.bits:
            wb, ab = BITS[label]
            for bc in (False, True):
                if bc and label not in args.bc_bits:
                    continue
                cfg = PTQConfig(
                    weight_bits=wb,
                    act_bits=ab,
                    observer=observer,
                    weight_observer="minmax",
                    per_channel=True,
                    bias_correction=bc,
                )
                table[(observer, label, bc)] = top1(quantize_ptq(model, cfg, calib), te_x, te_y)
            print(f"  [{time.time() - t0:.0f}s] {name} {observer} done", flush=True)
    extra = []
    for preset in ("banner_w4a8",):
        extra.append(
            (
                f"preset `{preset}` (W4 per-channel ACIQ weights+acts, bias correction)",
                top1(quantize_ptq(model, PRESETS.get(preset)(), calib), te_x, te_y),
            )
        )
    w4a4 = PTQConfig(
        weight_bits=4, act_bits=4, observer="aciq", weight_observer="aciq", bias_correction=True
    )
    extra.append(
        (
            "W4A4, ACIQ weights+acts, bias correction",
            top1(quantize_ptq(model, w4a4, calib), te_x, te_y),
        )
    )
    w4a4m = PTQConfig(
        weight_bits=4, act_bits=4, observer="mse", weight_observer="mse", bias_correction=True
    )
    extra.append(
        (
            "W4A4, MSE weights+acts, bias correction",
            top1(quantize_ptq(model, w4a4m, calib), te_x, te_y),
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        shape = tuple(te_x.shape[1:])
        if ("minmax", "W8A8", False) not in table:
            ours8 = top1(quantize_ptq(model, PTQConfig(), calib), te_x, te_y)
            extra.append(("ours W8A8 minmax (simulated in torch)", ours8))
        extra += ort_rows(model, shape, calib, te_x, te_y, Path(tmp)) if args.ort else []
    return dict(
        name=name,
        data=ds_name,
        origin=origin,
        float=float_acc,
        table=table,
        extra=extra,
        n_test=len(te_x),
        seconds=time.time() - t0,
    )


def write(results: list[dict], cmd: str, args, seconds: float, out: Path) -> None:
    lines = [
        "# Post-training quantization: accuracy per observer and bit width",
        "",
        f"Command: `{cmd}`",
        "",
        f"Setup: the same {args.calib} training images (seeded) calibrate every variant; "
        "weights per-channel symmetric (min/max), activations per-tensor affine unsigned at every "
        "conv/linear input with the named observer; BN folded. 'BC' = empirical bias correction "
        "(per-channel output means matched to the float network on the calibration images, layer by layer). "
        f"1 torch thread, CPU, total {seconds:.0f} s. Top-1 on a seeded test subset.",
        "",
        f"Host: {cpu_line()}; load at the end: `{uptime()}`.",
        "",
    ]
    for r in results:
        lines += [
            f"## {r['name']} on {r['data']} ({r['origin']}; {r['n_test']} test images)",
            "",
            f"Float top-1: **{r['float'] * 100:.2f}%**",
            "",
        ]
        labels = [b for b in args.bits]
        head = (
            "| observer | "
            + " | ".join(f"{b}" + (f" | {b}+BC" if b in args.bc_bits else "") for b in labels)
            + " |"
        )
        ncol = sum(2 if b in args.bc_bits else 1 for b in labels)
        lines += [head, "|---|" + "---:|" * ncol]
        for obs in args.observers:
            cells = []
            for b in labels:
                cells.append(f"{r['table'][(obs, b, False)] * 100:.2f}")
                if (obs, b, True) in r["table"]:
                    cells.append(f"{r['table'][(obs, b, True)] * 100:.2f}")
            lines.append(f"| {obs} | " + " | ".join(cells) + " |")
        lines += ["", "| other variant | top-1 |", "|---|---:|"]
        lines += [f"| {v} | {a * 100:.2f}% |" for v, a in r["extra"]]
        best8 = max(r["table"][(o, "W8A8", False)] for o in args.observers)
        w4a4 = [v for (o, b, bc), v in r["table"].items() if b == "W4A4"]
        w4a4 += [a for v, a in r["extra"] if v.startswith("W4A4")]
        best44 = max(w4a4)
        lines += [
            "",
            "Targets: W8A8 within 0.3 point of float: "
            f"best {best8 * 100:.2f}% vs {r['float'] * 100:.2f}% -> "
            f"{'met' if r['float'] - best8 <= 0.003 else 'NOT met'}; "
            f"W4A4 within 2 points (best observer + BC): best {best44 * 100:.2f}% -> "
            f"{'met' if r['float'] - best44 <= 0.02 else 'NOT met'}.",
            "",
        ]
    out.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--calib", type=int, default=512)
    p.add_argument("--test-lenet", type=int, default=10000)
    p.add_argument("--test-resnet", type=int, default=2000)
    p.add_argument("--train-lenet", type=int, default=20000)
    p.add_argument("--epochs-lenet", type=int, default=3)
    p.add_argument("--train-resnet", type=int, default=10000)
    p.add_argument("--epochs-resnet", type=int, default=3)
    p.add_argument("--observers", nargs="+", default=OBSERVERS.names(), choices=OBSERVERS.names())
    p.add_argument("--bits", nargs="+", default=list(BITS), choices=list(BITS))
    p.add_argument(
        "--bc-bits",
        nargs="*",
        default=["W4A8", "W4A4", "W2A8"],
        choices=list(BITS),
        help="bit settings that also get a bias-corrected column",
    )
    p.add_argument("--no-ort", dest="ort", action="store_false")
    p.add_argument("--out", default=str(ROOT / "results" / "quant_ptq.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    results = []
    for name in args.models:
        print(f"[{time.time() - t0:.0f}s] {name}", flush=True)
        results.append(run_task(name, args))
    cmd = "nice -n 10 python benchmarks/quant_ptq.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    write(results, cmd.strip(), args, time.time() - t0, Path(args.out))
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
