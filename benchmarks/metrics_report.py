"""The survey's six ratios for a few compressions of one trained LeNet-5 (Fashion-MNIST).

Trains a baseline on a data subset, then compresses copies of it side by side:
- Han'15 magnitude pruning (90% of weights, global threshold, 1 fine-tune epoch), measured
  as a masked dense model and as CSR sparse layers (slimkit.pruning.to_sparse);
- Li'17 L1 filter pruning to 50% of the MACs (structured, 1 fine-tune epoch);
- int8 post-training quantization with torch's x86 backend (slimkit.deploy.torch_int8).
Every row is measured the same way by slimkit.metrics.measure (accuracy, S, T, C, E, D)
and written by slimkit.metrics.Report (md/csv/json/png).

    nice -n 10 python benchmarks/metrics_report.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from slimkit import data, zoo
from slimkit.metrics import Report, measure, measure_latency
from slimkit.train import evaluate, fit

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fashion-mnist"
RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(SHARED))
    parser.add_argument("--train-subset", type=int, default=12000)
    parser.add_argument("--test-subset", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["nice -n 10 python benchmarks/metrics_report.py", *given])
    torch.manual_seed(0)
    torch.set_num_threads(1)
    start = time.time()

    train = data.subset(data.load("fashion-mnist", root=args.root, split="train"),
                        args.train_subset, seed=0)
    test = data.subset(data.load("fashion-mnist", root=args.root, split="test"),
                       args.test_subset, seed=0)
    train_loader = data.loader(train, batch_size=128, train=True, seed=0)
    test_loader = data.loader(test, batch_size=500)
    shape = zoo.input_shape("lenet5")
    example = torch.randn(1, *shape)

    base = zoo.create("lenet5")
    fit(base, train_loader, epochs=args.epochs, lr=0.05, progress=False, seed=0)
    base.eval()
    print(f"baseline trained ({time.time() - start:.0f} s)", flush=True)

    from slimkit.deploy.torch_int8 import convert_torch_int8
    from slimkit.pruning import PruneConfig, prune, to_sparse

    lat = {"warmup": 5, "repeats": args.repeats, "threads": 1}
    models: dict[str, tuple[torch.nn.Module, dict]] = {"baseline fp32": (base, {})}
    han = prune(base, PruneConfig(method="magnitude", ratio=0.9, scope="global",
                                  finetune_epochs=1, lr=0.01), data=train_loader).eval()
    models["magnitude 90% (masked dense)"] = (han, {"skip_zeros": True})
    models["magnitude 90% (CSR layers)"] = (to_sparse(han, min_sparsity=0.5).eval(),
                                            {"skip_zeros": True})
    print(f"magnitude done ({time.time() - start:.0f} s)", flush=True)
    l1 = prune(base, PruneConfig(method="l1_filter", ratio=0.5, target="macs",
                                 finetune_epochs=1, lr=0.01),
               example_inputs=example, data=train_loader).eval()
    models["L1 filters 50% MACs"] = (l1, {})
    print(f"l1_filter done ({time.time() - start:.0f} s)", flush=True)
    calib = [x for x, _ in list(train_loader)[:8]]
    models["int8 PTQ (torch x86)"] = (convert_torch_int8(base, calib, input_shape=shape),
                                      {"weight_bits": 8, "act_bits": 8})

    report = Report(title="LeNet-5, Fashion-MNIST: the six ratios")
    baseline = None
    batch64: dict[str, float] = {}
    for method, (model, kw) in models.items():
        m = measure(model, shape, loader=test_loader, evaluate=evaluate, latency_kwargs=lat,
                    **kw)
        baseline = baseline or m
        batch64[method] = measure_latency(model, shape, batch_size=64, warmup=2,
                                          repeats=max(5, args.repeats // 3),
                                          threads=1).median_ms
        report.add("lenet5", method, m, baseline=baseline,
                   latency_b64_ms=round(batch64[method], 3))
        print(f"{method}: measured ({time.time() - start:.0f} s)", flush=True)

    paths = report.write(RESULTS / "metrics_report", stem="lenet5_fashion")
    b64 = batch64["baseline fp32"]
    lines = [
        "# Six ratios of the survey on one trained LeNet-5",
        "",
        f"Command: `{command}`",
        "",
        f"Setup: Fashion-MNIST, seeded class-balanced subsets of {args.train_subset} train / "
        f"{args.test_subset} test images; baseline LeNet-5 (Caffe variant) trained "
        f"{args.epochs} epochs (SGD 0.05, cosine); pruned models fine-tuned 1 epoch (lr "
        "0.01) on the same subset. Latency: torch eager (onnxruntime not used here), batch 1, "
        f"1 thread, median of {args.repeats} runs after 5 warm-up. MACs and modelled energy "
        "(Horowitz 45 nm, survey device1: 2 MB cache) count only non-zero weights for the "
        "magnitude-pruned rows (sparse execution assumed); int8 energy uses 8-bit weights "
        "and activations. D: index bits actually stored (CSR int32 arrays for the CSR row; "
        "minimal-width CSR for the masked dense row). Short training on a subset: accuracy is "
        "below a full run's ~91%.",
        "",
        report.to_markdown().replace("## ", "## Table: ", 1),
        "r_D is inf where the original stores no indices (see slimkit.metrics.ratios).",
        "",
        "## Latency at batch 64 (1 thread, torch eager)",
        "",
        "| method | latency b64 (ms) | r_T at b64 |",
        "|---|---|---|",
        *(f"| {k} | {v:.3f} | {v / b64:.3f} |" for k, v in batch64.items()),
        "",
        "Files: " + ", ".join(f"`{p.relative_to(RESULTS.parent)}`" for p in paths.values()),
        "",
        f"Total run time: {time.time() - start:.0f} s.",
        "",
    ]
    (RESULTS / "metrics_report.md").write_text("\n".join(lines))
    print(f"wrote {RESULTS / 'metrics_report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
