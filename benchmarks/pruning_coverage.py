"""Coverage of the pruning dependency graph over the model zoo.

For every zoo model: layers, dependency groups and prunable groups, time to build the graph,
then a uniform 30% L1-filter prune of every prunable group (Li et al. 2017 scores on the
group's out-weights), physically shrunk and checked against the masked model (same weights,
removed channels zeroed) in eval mode, with params and MACs before/after.

Untrained zoo weights (seeded) with randomised BN statistics and affine parameters, so a
wrong slice shows up in the outputs; input N(0, 1), batch 2; 1 torch thread.

Second table: the held-out graphs of tests/graph/_heldout.py (networks outside the zoo) at a
``--heldout-ratio`` channel target, without ``ignore``: the ratio slimkit delivers
(``slimkit.graph.delivered``) next to Torch-Pruning's (MagnitudePruner, L1 group importance,
the same target, only the final classifier ignored), both checked to still run.

    nice -n 10 python benchmarks/pruning_coverage.py [--models resnet20 vgg16] [--ratio 0.3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from slimkit import zoo
from slimkit.graph import DependencyGraph, apply_channel_mask, delivered, shrink
from slimkit.metrics import count_macs, count_params

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "results" / "pruning_coverage.md"


def randomize_bn(model: nn.Module, seed: int = 1) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def l1_keep(graph: DependencyGraph, ratio: float) -> dict[str, torch.Tensor]:
    keep = {}
    with torch.no_grad():
        for g in graph.prunable_groups:
            n = max(1, g.size - int(round(ratio * g.size)))
            if n < g.size:
                keep[g.id] = g.weights(0).abs().sum(1).topk(n).indices.sort().values
    return keep


def run(name: str, ratio: float, repeats: int = 3) -> dict:
    torch.manual_seed(0)
    model = randomize_bn(zoo.create(name)).eval()
    shape = zoo.input_shape(name)
    x = torch.randn(2, *shape)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        graph = DependencyGraph.build(model, x)
        times.append(time.perf_counter() - t0)
    row = {
        "model": name,
        "layers": sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules()),
        "bn": sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()),
        "groups": len(graph.groups),
        "prunable": len(graph.prunable_groups),
        "build_ms": 1000 * statistics.median(times),
    }
    keep = l1_keep(graph, ratio)
    t0 = time.perf_counter()
    small = shrink(model, graph, keep)
    row["shrink_ms"] = 1000 * (time.perf_counter() - t0)
    masked = apply_channel_mask(model, graph, keep)
    with torch.no_grad():
        ym, ys = masked(x), small(x)
    row["max_abs_diff"] = float((ym - ys).abs().max())
    row["rel_diff"] = row["max_abs_diff"] / float(ym.abs().max())
    row["ok"] = row["rel_diff"] < 1e-5
    row["params"] = (count_params(model), count_params(small))
    row["macs"] = (count_macs(model, shape).total, count_macs(small, shape).total)
    return row


def heldout_row(name: str, make, shape, ratio: float) -> dict:
    """slimkit vs Torch-Pruning on one held-out graph at a uniform channel ``ratio``."""
    import copy

    torch.manual_seed(0)
    model = randomize_bn(make()).eval()
    x = torch.randn(2, *shape)
    row: dict = {"model": name, "params": count_params(model)}
    graph = DependencyGraph.build(model, x)
    keep = {}
    with torch.no_grad():
        for g in graph.prunable_groups:
            n = max(1, g.size - int(round(ratio * g.size)))
            if n < g.size:
                keep[g.id] = g.weights(0).abs().sum(1).topk(n).indices.sort().values
    d = delivered(graph, keep)
    small = shrink(model, graph, keep).eval()
    with torch.no_grad():
        ym, ys = apply_channel_mask(model, graph, keep)(x), small(x)
    row["ours"] = (1 - d.params_ratio, d.channel_ratio,
                   float((ym - ys).abs().max() / ym.abs().max()) < 1e-4)
    try:
        import torch_pruning as tp

        pruned = copy.deepcopy(model)
        head = [m for m in pruned.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
        pruner = tp.pruner.MagnitudePruner(pruned, x, importance=tp.importance.MagnitudeImportance(p=1),
                                           pruning_ratio=ratio, ignored_layers=[head])
        pruner.step()
        with torch.no_grad():
            pruned.eval()(x)
        row["tp"] = count_params(pruned) / row["params"]
    except Exception as e:  # noqa: BLE001 - a failure is a result here
        row["tp"] = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
    return row


def heldout_lines(ratio: float) -> list[str]:
    sys.path.insert(0, str(ROOT))
    from tests.graph._heldout import HELDOUT

    rows = []
    for name, (make, shape) in HELDOUT.items():
        rows.append(heldout_row(name, make, shape, ratio))
        print(rows[-1], flush=True)
    lines = [
        "", f"## Held-out graphs (tests/graph/_heldout.py), {ratio:.0%} channel target", "",
        "Each network as written, no `ignore`; every prunable group loses the target share of "
        "its channels (L1). slimkit: parameters kept and channels removed as reported by "
        "`delivered(graph, keep)` (exact: equal to the shrunk model's count), and shrunk == masked. "
        "Torch-Pruning: `MagnitudePruner(pruning_ratio=target, MagnitudeImportance(p=1))` with the "
        "last layer ignored; parameters kept, or the error it raised.", "",
        "| network | params | slimkit params kept | slimkit channels removed | shrunk == masked | "
        "Torch-Pruning params kept |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        kept, chans, ok = r["ours"]
        tp_cell = f"{r['tp']:.2f}" if isinstance(r["tp"], float) else f"failed: {r['tp']}"
        lines.append(f"| {r['model']} | {r['params']:,} | {kept:.2f} | {chans:.0%} | "
                     f"{'yes' if ok else 'NO'} | {tp_cell} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=zoo.names())
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--heldout-ratio", type=float, default=0.5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.models:
        try:
            rows.append(run(name, args.ratio))
        except Exception as e:  # noqa: BLE001 - a failure is a result here
            rows.append({"model": name, "error": f"{type(e).__name__}: {e}"})
        print(rows[-1], flush=True)
    cmd = "nice -n 10 python benchmarks/pruning_coverage.py " + " ".join(sys.argv[1:])
    lines = [
        "# Pruning dependency graph: coverage of the model zoo", "",
        f"Command: `{cmd.strip()}`", "",
        f"Setup: untrained zoo models (seed 0) with randomised BN statistics/affine params, eval "
        f"mode, input N(0, 1) batch 2 at each model's input shape, torch {torch.__version__}, "
        f"1 thread. Every prunable group loses {args.ratio:.0%} of its channels by L1 norm of "
        "its out-weights; `shrink` is checked against `apply_channel_mask` (the same model with "
        "the removed channels zeroed). Layers = Conv2d + Linear. Build time: median of 3.", "",
        "| model | layers | BN | groups | prunable | build ms | shrink ms | shrunk == masked "
        "(max abs diff, rel) | params before -> after | MACs before -> after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | | | | | | | FAILED: {r['error']} | | |")
            continue
        (p0, p1), (m0, m1) = r["params"], r["macs"]
        lines.append(
            f"| {r['model']} | {r['layers']} | {r['bn']} | {r['groups']} | {r['prunable']} | "
            f"{r['build_ms']:.0f} | {r['shrink_ms']:.0f} | {'yes' if r['ok'] else 'NO'} "
            f"({r['max_abs_diff']:.1e}, {r['rel_diff']:.1e}) | {p0:,} -> {p1:,} ({p1 / p0:.2f}x) | "
            f"{m0 / 1e6:.1f} M -> {m1 / 1e6:.1f} M ({m1 / m0:.2f}x) |")
    lines += ["", "Groups that are not prunable: the network input, the classifier's outputs "
              "(network output) and, where present, groups fixed by ops the graph keeps whole."]
    lines += heldout_lines(args.heldout_ratio)
    lines += ["", f"Host: {_cpu()}; load before the run: {LOAD}"]
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")
    return 0 if all("error" not in r and r["ok"] for r in rows) else 1


def _cpu() -> str:
    import platform
    import subprocess

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(l.split(":", 1)[1].strip() for l in out.splitlines() if "Model name" in l)
        flags = next((l for l in out.splitlines() if l.startswith("Flags")), "")
        extra = [f for f in ("avx512f", "avx512_vnni", "avx2") if f" {f}" in flags]
        return f"{model} ({', '.join(extra)}), {platform.machine()}"
    except Exception:  # noqa: BLE001
        return platform.processor() or platform.machine()


def _load() -> str:
    import os

    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


LOAD = _load()

if __name__ == "__main__":
    raise SystemExit(main())
