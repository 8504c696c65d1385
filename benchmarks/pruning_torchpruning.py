"""Structured pruning side by side with Torch-Pruning (Fang et al., "DepGraph: Towards Any
Structural Pruning", CVPR 2023): same models, same L1 filter importance, same ~2x MAC target.

For each model, one uniform channel ratio r is found (bisection) so that slimkit's shrunk
model keeps <= 50% of the MACs; both libraries then remove r of every prunable group's
channels (keep int(C * (1 - r)), Torch-Pruning's local rule) by the L1 norm of the group's
producer filters (summed over coupled conv/linear/depthwise filters, the same score fed to
both). Measured: time to build the dependency graph and to prune, params/MACs, whether the
two pruned architectures and outputs agree, and latency at batch 1 and 64 (torch eager and
onnxruntime, 1 thread, interleaved round robin, medians).

Torch-Pruning is optional (`pip install torch-pruning`); without it the script says so and
exits 0. Models are untrained (seed 0) unless benchmarks/checkpoints/<name>.pt exists.

    nice -n 10 python benchmarks/pruning_torchpruning.py [--models resnet20 vgg16] [--no-onnx]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from slimkit import zoo
from slimkit.graph import DependencyGraph, apply_channel_mask, shrink
from slimkit.metrics import count_macs, count_params

from pruning_coverage import randomize_bn  # same folder: BN with non-trivial statistics
from _checkpoints import trained  # same folder

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "pruning_torchpruning.md"
SESSIONS = 3  # onnxruntime sessions per model file


def load_model(name: str) -> tuple[nn.Module, str]:
    found = trained(name)  # the baselines' checkpoint, where one exists
    if found is not None:
        return found
    torch.manual_seed(0)
    return randomize_bn(zoo.create(name)).eval(), "untrained (seed 0), random BN stats"


# -- slimkit -----------------------------------------------------------------------------
def l1_scores(graph: DependencyGraph) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {g.id: g.weights(0).abs().sum(1) for g in graph.prunable_groups}


def keep_uniform(graph: DependencyGraph, scores: dict[str, torch.Tensor], r: float) -> dict:
    keep = {}
    for g in graph.prunable_groups:
        n = max(1, int(g.size * (1 - r)))
        if n < g.size:
            keep[g.id] = scores[g.id].topk(n).indices.sort().values
    return keep


def find_ratio(model: nn.Module, graph: DependencyGraph, shape, target: float = 0.5) -> float:
    """Smallest uniform ratio (to 1e-3) whose shrunk model has <= target x the MACs (kept
    counts rounded to the graph's round_to)."""
    scores, base = l1_scores(graph), count_macs(model, shape).total
    lo, hi = 0.0, 0.95
    while hi - lo > 1e-3:
        mid = (lo + hi) / 2
        keep = graph.round_keep(keep_uniform(graph, scores, mid))
        macs = count_macs(shrink(model, graph, keep), shape).total
        lo, hi = (lo, mid) if macs <= target * base else (mid, hi)
    return hi


def prune_slimkit(model: nn.Module, x: torch.Tensor, r: float, round_to: int = 1,
                  repeats: int = 3) -> tuple[nn.Module, float, float, DependencyGraph, dict]:
    """Build the graph, score, shrink (a copy); medians of ``repeats`` timings."""
    builds, prunes = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        graph = DependencyGraph.build(model, x, round_to=round_to)
        t1 = time.perf_counter()
        keep = keep_uniform(graph, l1_scores(graph), r)
        keep = graph.round_keep(keep) if round_to > 1 else keep
        small = shrink(model, graph, keep)
        builds.append(t1 - t0)
        prunes.append(time.perf_counter() - t1)
    return small, statistics.median(builds), statistics.median(prunes), graph, keep


# -- torch-pruning -----------------------------------------------------------------------
def prune_tp(tp, model: nn.Module, x: torch.Tensor, r: float,
             repeats: int = 3) -> tuple[nn.Module, float, float]:
    out_fns = {tp.prune_conv_out_channels, tp.prune_linear_out_channels,
               tp.prune_depthwise_conv_out_channels}

    class L1Out(tp.importance.Importance):
        """The same score as slimkit's: L1 of every coupled producer filter, summed."""

        @torch.no_grad()
        def __call__(self, group):
            n = len(group[0].idxs)
            total = torch.zeros(n)
            for i, (dep, idxs) in enumerate(group):
                if dep.pruning_fn not in out_fns:
                    continue
                w = dep.layer.weight.detach()[idxs].flatten(1).abs().sum(1)
                total.scatter_add_(0, torch.tensor(group[i].root_idxs), w)
            return total

    builds, prunes = [], []
    for _ in range(repeats):
        pruned = copy.deepcopy(model)  # Torch-Pruning works in place; the copy is not timed
        head = [m for m in pruned.modules() if isinstance(m, nn.Linear)][-1]
        t0 = time.perf_counter()
        pruner = tp.pruner.MagnitudePruner(pruned, x, importance=L1Out(), pruning_ratio=r,
                                           ignored_layers=[head], global_pruning=False)
        t1 = time.perf_counter()
        pruner.step()
        builds.append(t1 - t0)
        prunes.append(time.perf_counter() - t1)
    return pruned, statistics.median(builds), statistics.median(prunes)


# -- latency -----------------------------------------------------------------------------
def interleaved(fns: dict[str, callable], repeats: int, warmup: int = 3,
                blocks: int = 5) -> dict[str, float]:
    """ms of each fn: timed round robin (order rotated every round) in ``blocks`` blocks of
    ``repeats`` runs; the lowest block median wins (other jobs on the shared CPU come and go)."""
    keys = list(fns)
    for _ in range(warmup):
        for f in fns.values():
            f()
    best = {k: float("inf") for k in fns}
    for _ in range(blocks):
        times = {k: [] for k in fns}
        for i in range(repeats):
            for k in keys[i % len(keys):] + keys[:i % len(keys)]:
                t0 = time.perf_counter()
                fns[k]()
                times[k].append(1000 * (time.perf_counter() - t0))
        best = {k: min(best[k], statistics.median(v)) for k, v in times.items()}
    return best


def torch_runner(model: nn.Module, x: torch.Tensor):
    def f():
        with torch.inference_mode():
            model(x)
    return f


def ort_runner(model: nn.Module, shape, batch: int, tmp: Path, tag: str):
    import onnxruntime as ort

    path = tmp / f"{tag}.onnx"
    if not path.exists():
        torch.onnx.export(model, (torch.randn(1, *shape),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}})
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = torch.randn(batch, *shape).numpy()
    return lambda: sess.run(None, {"x": x})


def compare(tp, name: str) -> dict:
    """Prune ``name`` with both libraries at the same ratio; structure, timings, agreement."""
    model, source = load_model(name)
    shape = zoo.input_shape(name)
    x = torch.randn(2, *shape)
    r = find_ratio(model, DependencyGraph.build(model, x), shape)
    ours, ours_build, ours_prune, graph, keep = prune_slimkit(model, x, r)
    theirs, tp_build, tp_prune = prune_tp(tp, model, x, r)
    r8_ratio = find_ratio(model, DependencyGraph.build(model, x, round_to=8), shape)
    r8 = prune_slimkit(model, x, r8_ratio, round_to=8, repeats=1)[0]
    masked = apply_channel_mask(model, graph, keep)
    with torch.no_grad():
        ym, yo, yt = masked(x), ours(x), theirs(x)
    sd_o, sd_t = ours.state_dict(), theirs.state_dict()
    same_arch = list(sd_o) == list(sd_t) and all(sd_o[k].shape == sd_t[k].shape for k in sd_o)
    return dict(model=name, source=source, ratio=r, p0=count_params(model),
                m0=count_macs(model, shape).total, po=count_params(ours),
                mo=count_macs(ours, shape).total, pt=count_params(theirs),
                mt=count_macs(theirs, shape).total, ob=ours_build, op=ours_prune, tb=tp_build,
                tpp=tp_prune, same_arch=same_arch, m8=count_macs(r8, shape).total, r8=r8_ratio,
                d_mask=float((ym - yo).abs().max()), d_tp=float((yo - yt).abs().max()),
                scale=float(yo.abs().max()),
                variants={"original": model, "slimkit": ours, "torch-pruning": theirs,
                          "slimkit r8": r8})


def latency(row: dict, onnx: bool, repeats: int, blocks: int, tmp: Path) -> list:
    name, shape, out = row["model"], zoo.input_shape(row["model"]), []
    for batch in (1, 64):
        reps = repeats if batch == 1 else max(3, repeats // 5)
        warm = 10 if batch == 1 else 2
        xb = torch.randn(batch, *shape)
        fns = {k: torch_runner(m, xb) for k, m in row["variants"].items()}
        out.append((name, batch, "torch eager", interleaved(fns, reps, warm, blocks), reps))
        if onnx:  # a session's speed depends on its allocations: best of SESSIONS sessions
            fns = {(k, i): ort_runner(m, shape, batch, tmp, f"{name}-{k}")
                   for k, m in row["variants"].items() for i in range(SESSIONS)}
            ms = interleaved(fns, reps, warm, max(1, blocks - 2))
            best = {k: min(ms[(k, i)] for i in range(SESSIONS)) for k in row["variants"]}
            spread = max(max(ms[(k, i)] for i in range(SESSIONS)) / best[k] for k in best)
            out.append((name, batch, "onnxruntime", best, reps))
            row.setdefault("spread", []).append(spread)
            row["same_onnx"] = ((tmp / f"{name}-slimkit.onnx").read_bytes()
                                == (tmp / f"{name}-torch-pruning.onnx").read_bytes())
        print(out[-1], flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=["resnet20", "resnet56", "vgg16", "mobilenetv2"])
    ap.add_argument("--no-onnx", action="store_true", help="skip onnxruntime latency")
    ap.add_argument("--repeats", type=int, default=15,
                    help="timed runs per block at batch 1 (batch 64: a fifth, at least 3)")
    ap.add_argument("--blocks", type=int, default=4,
                    help="timing blocks (onnxruntime: 2 fewer); the lowest median wins")
    args = ap.parse_args(argv)
    try:
        import torch_pruning as tp
    except ImportError:
        print("torch-pruning is not installed (pip install torch-pruning); nothing to compare, "
              "skipping")
        return 0
    torch.set_num_threads(1)
    rows, lat = [], []
    with tempfile.TemporaryDirectory() as tmpdir:
        for name in args.models:
            rows.append(compare(tp, name))
            print({k: v for k, v in rows[-1].items() if k != "variants"}, flush=True)
            lat += latency(rows[-1], not args.no_onnx, args.repeats, args.blocks, Path(tmpdir))
    write(rows, lat, tp.__version__, args.blocks)
    return 0


def write(rows: list[dict], lat: list, tp_version: str, blocks: int) -> None:
    cmd = "nice -n 10 python benchmarks/pruning_torchpruning.py " + " ".join(sys.argv[1:])
    lines = [
        "# Structured pruning: slimkit.graph vs Torch-Pruning", "",
        f"Command: `{cmd.strip()}`", "",
        f"Setup: torch {torch.__version__}, torch-pruning {tp_version}, 1 thread, eval mode, "
        "input N(0, 1). Per model one uniform channel ratio r (bisection: slimkit's shrunk MACs "
        "<= 0.5x) applied by both libraries to every prunable group, keeping int(C(1 - r)) "
        "channels by the same L1 score (sum of |w| over the group's coupled producer filters). "
        "The final classifier's outputs are kept (Torch-Pruning: ignored_layers=[classifier]). "
        "Build = dependency-graph construction (slimkit: `DependencyGraph.build`; Torch-Pruning: "
        "the pruner's constructor); prune = scoring + physical removal (`shrink` on a copy; "
        "`pruner.step()` in place on a copy made outside the timer); medians of 3. No "
        "fine-tuning here (accuracy is the pruning methods' benchmarks' job).", "",
        "## Structure", "",
        "| model | weights | r | params: orig / slimkit / TP | MACs: orig / slimkit / TP | "
        "same architecture | max abs diff slimkit vs TP (output scale) | slimkit vs masked | "
        "build ms slimkit / TP | prune ms slimkit / TP |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['source']} | {r['ratio']:.3f} | "
            f"{r['p0']:,} / {r['po']:,} / {r['pt']:,} | {r['m0'] / 1e6:.1f} M / "
            f"{r['mo'] / 1e6:.1f} M ({r['mo'] / r['m0']:.2f}x) / "
            f"{r['mt'] / 1e6:.1f} M ({r['mt'] / r['m0']:.2f}x) | "
            f"{'yes' if r['same_arch'] else 'no'} | {r['d_tp']:.1e} ({r['scale']:.1e}) | "
            f"{r['d_mask']:.1e} | {1000 * r['ob']:.0f} / {1000 * r['tb']:.0f} | "
            f"{1000 * r['op']:.0f} / {1000 * r['tpp']:.0f} |")
    lines += ["", f"## Latency (ms, 1 thread, interleaved; lowest of {blocks} block medians, "
              f"onnxruntime: {max(1, blocks - 2)} blocks x {SESSIONS} sessions)", "",
              "| model | batch | runtime | runs per block | original | slimkit | torch-pruning | "
              "slimkit round_to=8 | speed-up slimkit / TP / r8 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, batch, rt, ms, reps in lat:
        o = ms["original"]
        lines.append(
            f"| {name} | {batch} | {rt} | {reps} | {o:.2f} | {ms['slimkit']:.2f} | "
            f"{ms['torch-pruning']:.2f} | {ms['slimkit r8']:.2f} | {o / ms['slimkit']:.2f}x / "
            f"{o / ms['torch-pruning']:.2f}x / {o / ms['slimkit r8']:.2f}x |")
    r8 = ", ".join(f"{r['model']} r = {r['r8']:.3f}, {r['m8'] / 1e6:.1f} M MACs "
                   f"({r['m8'] / r['m0']:.2f}x)" for r in rows)
    onnx = ", ".join(f"{r['model']} {'yes' if r.get('same_onnx') else 'no/not checked'}"
                     for r in rows)
    lines += [
        "", "slimkit round_to=8: kept counts rounded up to multiples of 8 "
        "(`DependencyGraph.build(..., round_to=8)` + `graph.round_keep`), with its own uniform "
        f"ratio found by the same bisection (<= 0.5x MACs): {r8}.",
        "", "The machine is a shared 2-core CPU (other jobs running); latencies carry that "
        "noise. slimkit and Torch-Pruning produce the same architecture (ONNX files "
        f"byte-identical: {onnx}), so differences between those two columns are noise. "
        f"onnxruntime: each file is timed in {SESSIONS} separate sessions ({max(1, blocks - 2)} "
        "blocks) and the fastest session is reported, because sessions of one and the same "
        "file differ a lot here (slowest / fastest session, worst variant per row: "
        + ", ".join(f"{r['model']} " + " / ".join(f"{x:.1f}x" for x in r.get("spread", []))
                    for r in rows) + "; batch 1 then 64). Models "
        "whose channel counts are not multiples of 8 run slower in onnxruntime than their MACs "
        "suggest (its blocked NCHWc kernels want multiples of 8/16; compare the round_to=8 "
        "column)."]
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    raise SystemExit(main())
