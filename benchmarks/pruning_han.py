"""Han'15 iterative magnitude pruning with retraining on LeNet-300-100 and LeNet-5
(Fashion-MNIST): the parameter ratio reached at <= 0.3 point accuracy loss.

Side by side in one run, at the same sparsities: our prune/retrain cycles
(`slimkit.pruning.iterative_magnitude_prune`, global threshold, 1 retraining epoch per cycle),
one-shot magnitude pruning without retraining (baseline), and torch.nn.utils.prune's
`global_unstructured(L1Unstructured)` one-shot (peer library; must equal our one-shot).

    nice -n 10 python benchmarks/pruning_han.py
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from _pruning_common import HERE, checkpoint_or_train, loaders, nonzero_params, total_params
from torch import nn
from torch.nn.utils import prune as tprune

from slimkit.pruning import iterative_magnitude_prune, magnitude_prune
from slimkit.train import evaluate

MODELS = {"lenet300": "lenet300_fashion.pt", "lenet5": "lenet5_fashion.pt"}


def torch_global(model: nn.Module, s: float) -> nn.Module:
    m = copy.deepcopy(model)
    params = [(mod, "weight") for mod in m.modules() if isinstance(mod, (nn.Linear, nn.Conv2d))]
    tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=s)
    for mod, name in params:
        tprune.remove(mod, name)
    return m


def run_model(arch: str, args, train, test) -> tuple[list, dict]:
    model, origin = checkpoint_or_train(arch, MODELS[arch], train, epochs=2, lr=0.05)
    dense_acc = evaluate(model, test)["top1"]
    n_total = total_params(model)
    rows = []
    oneshot = {}
    for s in args.sparsities:
        ours = magnitude_prune(model, s, scope="global")
        peer = torch_global(model, s)
        oneshot[s] = (
            evaluate(ours, test)["top1"],
            evaluate(peer, test)["top1"],
            n_total / nonzero_params(ours),
            n_total / nonzero_params(peer),
        )
    t0 = time.time()

    def on_step(s: float, m: nn.Module) -> None:
        acc = evaluate(m, test)["top1"]
        rows.append((s, acc, n_total / nonzero_params(m), time.time() - t0))
        print(
            f"{arch} s={s:.3f}: retrained {acc:.4f} | one-shot {oneshot[s][0]:.4f} | "
            f"torch one-shot {oneshot[s][1]:.4f} | ratio {rows[-1][2]:.2f}x",
            flush=True,
        )

    iterative_magnitude_prune(
        model,
        train,
        args.sparsities,
        epochs_per_step=args.epochs_per_step,
        scope="global",
        on_step=on_step,
        lr=args.lr,
        progress=False,
    )
    return rows, {
        "dense_acc": dense_acc,
        "origin": origin,
        "params": n_total,
        "oneshot": oneshot,
        "time_s": time.time() - t0,
    }


def best_ratio(points: list[tuple[float, float]], dense: float, tol: float) -> str:
    ok = [r for acc, r in points if acc >= dense - tol]
    return f"{max(ok):.2f}x" if ok else "none"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument(
        "--sparsities",
        type=float,
        nargs="+",
        default=[0.5, 0.7, 0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96],
    )
    p.add_argument("--train-subset", type=int, default=20000)
    p.add_argument("--epochs-per-step", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--out", default=str(HERE / "results" / "pruning_han.md"))
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    train, test = loaders("fashion-mnist", args.train_subset, None)
    cmd = "nice -n 10 python benchmarks/pruning_han.py " + " ".join(sys.argv[1:])
    out = [
        "# Han'15 iterative magnitude pruning (LeNet-300-100, LeNet-5, Fashion-MNIST)",
        "",
        f"Command: `{cmd.strip()}`",
        "",
        f"Setup: retraining on a seeded {args.train_subset}-image subset of the Fashion-MNIST training "
        f"set, {args.epochs_per_step} epoch per prune/retrain cycle (SGD lr {args.lr}, momentum 0.9, "
        "cosine within the cycle, weight decay 5e-4, masks held by `MaskHook`); accuracy on the full "
        "10,000-image test set; 1 torch thread; global magnitude threshold over all conv/linear "
        "weights (Han'15 uses per-layer thresholds from a quality parameter); biases are never pruned "
        "and are counted. Param ratio = all parameters / non-zero parameters. Cycles are cumulative: "
        "the row at sparsity s has gone through every cycle up to s.",
        "",
    ]
    summary = [
        "## Parameter ratio reached at <= 0.3 point accuracy loss",
        "",
        "| model | dense top-1 | Han prune+retrain (ours) | one-shot magnitude (ours) | one-shot torch.nn.utils.prune | published (MNIST) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for arch in args.models:
        rows, info = run_model(arch, args, train, test)
        dense = info["dense_acc"]
        oneshot = info["oneshot"]
        out += [
            f"## {arch} ({info['params']:,} params; {info['origin']}; dense top-1 {dense:.4f}; "
            f"prune/retrain cycles took {info['time_s']:.0f} s)",
            "",
            "| sparsity | param ratio | Han retrained top-1 | drop (pt) | one-shot ours top-1 | one-shot torch top-1 |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for s, acc, ratio, _ in rows:
            o = oneshot[s]
            out.append(
                f"| {s:.2f} | {ratio:.2f}x | {acc:.4f} | {100 * (dense - acc):+.2f} | {o[0]:.4f} | {o[1]:.4f} |"
            )
        out.append("")
        summary.append(
            f"| {arch} | {dense:.4f} | {best_ratio([(a, r) for _, a, r, _ in rows], dense, 0.003)} | "
            f"{best_ratio([(o[0], o[2]) for o in oneshot.values()], dense, 0.003)} | "
            f"{best_ratio([(o[1], o[3]) for o in oneshot.values()], dense, 0.003)} | 12x |"
        )
    text = "\n".join(out[:6] + summary + [""] + out[6:]) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
