"""When does unstructured sparsity pay on this CPU? Dense vs CSR latency of FC layers.

The FC layers of LeNet-300-100 (784-300-100-10) and of ImageNet AlexNet (9216-4096-4096-1000,
the layers Deep Compression prunes hardest) are magnitude-pruned to 50-99% sparsity and run
as a dense `nn.Linear` (torch), as our `SparseLinear` (torch CSR sparse x dense), and as
scipy.sparse CSR (peer library), at batch 1 and 64. Weights are random (latency does not
depend on their values, only on the sparsity pattern, here uniform as magnitude pruning of
random weights gives). Storage: dense fp32 bytes vs `SparseLinear.storage_bytes()`.

    nice -n 10 python benchmarks/pruning_sparse.py
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse
import torch
from torch import nn

from slimkit.pruning import magnitude_prune
from slimkit.pruning.sparse import SparseLinear

HERE = Path(__file__).resolve().parent
NETS = {
    "lenet300": [(784, 300), (300, 100), (100, 10)],
    "alexnet-fc": [(9216, 4096), (4096, 4096), (4096, 1000)],
}


def timed(fn, repeats: int, warmup: int = 3) -> float:
    """Median wall time of fn() in ms."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def mlp(shape: list[tuple[int, int]]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(shape):
        layers.append(nn.Linear(a, b))
        if i < len(shape) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def scipy_forward(
    mats: list[tuple[scipy.sparse.csr_matrix, np.ndarray]], x: np.ndarray
) -> np.ndarray:
    h = x.T  # (in, B)
    for i, (w, b) in enumerate(mats):
        h = w @ h + b[:, None]
        if i < len(mats) - 1:
            np.maximum(h, 0, out=h)
    return h.T


def run(args: argparse.Namespace) -> str:
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rows = []
    for name, shape in NETS.items():
        dense = mlp(shape)
        dense_bytes = sum(p.numel() * 4 for p in dense.parameters())
        for s in args.sparsities:
            pruned = magnitude_prune(dense, s)
            sparse = nn.Sequential(
                *[SparseLinear.from_dense(m) if isinstance(m, nn.Linear) else m for m in pruned]
            )
            sp_bytes = sum(m.storage_bytes() for m in sparse if isinstance(m, SparseLinear))
            mats = [
                (scipy.sparse.csr_matrix(m.weight.detach().numpy()), m.bias.detach().numpy())
                for m in pruned
                if isinstance(m, nn.Linear)
            ]
            for batch in (1, 64):
                x = torch.randn(batch, shape[0][0])
                xn = x.numpy()
                with torch.inference_mode():
                    ref = pruned(x)
                    assert torch.allclose(sparse(x), ref, atol=1e-3, rtol=1e-3)
                    reps = args.repeats if name == "lenet300" else max(5, args.repeats // 4)
                    t_dense = timed(lambda: pruned(x), reps)
                    t_sparse = timed(lambda: sparse(x), reps)
                t_scipy = timed(lambda: scipy_forward(mats, xn), reps)
                rows.append((name, s, batch, t_dense, t_sparse, t_scipy, dense_bytes, sp_bytes))
                print(
                    f"{name} s={s:.2f} b={batch}: dense {t_dense:.3f} ms, csr {t_sparse:.3f} ms, "
                    f"scipy {t_scipy:.3f} ms",
                    flush=True,
                )
    return report(rows, args)


def report(rows, args) -> str:
    cmd = "nice -n 10 python benchmarks/pruning_sparse.py " + " ".join(sys.argv[1:])
    out = [
        "# Unstructured sparsity: dense vs CSR latency of FC layers",
        "",
        f"Command: `{cmd.strip()}`",
        "",
        f"Setup: {platform.processor() or platform.machine()}, torch {torch.__version__}, scipy "
        f"{scipy.__version__}, {args.threads} thread(s), shared 2-core machine (other jobs running). "
        "Random weights magnitude-pruned per layer (`slimkit.pruning.magnitude_prune`, element "
        "granularity, same sparsity in every layer), whole FC stack forward incl. bias and ReLU. "
        f"Median of {args.repeats} runs (LeNet) / {max(5, args.repeats // 4)} runs (AlexNet FC) after 3 warm-ups. "
        "Dense = `nn.Linear` on the pruned (zero-filled) weights; CSR = `slimkit.pruning.SparseLinear` "
        "(torch.sparse.mm, int32 indices); scipy = `scipy.sparse.csr_matrix @` (peer library). "
        "Speed-up = dense / CSR. Storage = dense fp32 bytes / CSR bytes (values + int32 column "
        "indices + row pointers + bias).",
        "",
        "| layers | sparsity | batch | dense ms | CSR ms (ours) | scipy CSR ms | speed-up ours | speed-up scipy | storage ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s, b, td, ts, tc, db, sb in rows:
        out.append(
            f"| {name} | {s:.2f} | {b} | {td:.3f} | {ts:.3f} | {tc:.3f} | {td / ts:.2f}x | "
            f"{td / tc:.2f}x | {db / sb:.2f}x |"
        )
    out += ["", "## When sparse wins", ""]
    for name in NETS:
        for b in (1, 64):
            wins = [s for n, s, bb, td, ts, *_ in rows if n == name and bb == b and ts < td]
            out.append(
                f"- {name}, batch {b}: CSR faster than dense at sparsity "
                + (", ".join(f"{s:.2f}" for s in wins) if wins else "none of the measured levels")
            )
    out += [
        "",
        "Published context: Deep Compression reports ~3x CPU speed-up for pruned FC layers at "
        "batch 1 (ANCHORS.md); storage ratio here excludes quantization and Huffman coding.",
    ]
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.9, 0.95, 0.99])
    p.add_argument("--repeats", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(HERE / "results" / "pruning_sparse.md"))
    args = p.parse_args()
    text = run(args)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
