"""One function per survey table (survey section 3.3-3.4; ../shared/survey/SURVEY.md).

Each takes the run (`setup.Survey`) and returns a `TableOut`: our rows, the published rows,
the setting (data, budget, hardware) and plain notes on where we differ and what we do not
reproduce. Every number comes from a cached cell (`cells.CellCache`).
"""

from __future__ import annotations

import copy
import statistics
import tempfile
from dataclasses import dataclass, field
from typing import Any

from slimkit.survey.measure import DEVICE_NAMES, six_ratios
from slimkit.survey.methods import describe
from slimkit.survey.setup import Survey

__all__ = ["BASELINES", "TableOut", "table6", "table7", "deep_compression", "section34", "table8",
           "distillation", "sensitivity", "mean_ci95", "FIVE", "composite5", "pareto", "dc_pipeline"]

# the survey's five criteria (accuracy, parameters, latency, MACs, energy), equal weights
FIVE = ("r_A", "r_p", "r_T", "r_c", "r_E")
# Adam lr of the fine-tune after each method: the LeNets' 60+ steps recover 90% pruning at
# 1e-3; AlexNet's few steps at 1e-3 shake a trained model more than they repair it
FT_LR = {"digits": 1e-3, "cifar": 1e-4}
# the trained baselines each table starts from: (arch, data kind, budget field of its train_n);
# arch None = the budget's Table 7 network
BASELINES: dict[str, list[tuple[str | None, str, str]]] = {
    "table6": [("alexnet", "cifar", "cifar_train_n")],
    "table7": [(None, "cifar", "vgg_train_n")],
    "deep_compression": [("lenet300", "digits", "digits_train_n"),
                         ("lenet5", "digits", "digits_train_n")],
    "section34": [("lenet5", "digits", "digits_train_n"), ("alexnet", "cifar", "cifar_train_n")],
    "table8": [],
    "distillation": [("lenet5", "digits", "digits_train_n")],
    "sensitivity": [("lenet5", "digits", "digits_train_n")],
}


@dataclass
class TableOut:
    key: str
    title: str
    setting: str
    rows: list[dict[str, Any]]
    published: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)   # for plots


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}%"


def _x(x: float | None, digits: int = 2) -> str:
    if x is None:
        return ""
    return "inf" if x == float("inf") else f"{x:.{digits}f}"


def composite5(r: dict[str, float | None]) -> float | None:
    """Equal-weight mean of the five ratios (lower is better); None if one is missing."""
    vals = [r.get(k) for k in FIVE]
    return None if any(v is None for v in vals) else sum(vals) / len(vals)


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both (lower x, higher y)."""
    keep = []
    for i, (x, y) in enumerate(points):
        if not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y)
                   for j, (x2, y2) in enumerate(points) if j != i):
            keep.append(i)
    return keep


# -- the generic cell: one method on one baseline --------------------------------------------
def method_cell(s: Survey, arch: str, kind: str, train_n: int, spec: dict[str, Any],
                ft_steps: int) -> dict[str, Any]:
    from slimkit import zoo

    base, binfo = s.baseline(arch, kind, train_n)
    ds = s.dataset(kind)
    shape = zoo.input_shape(arch)
    ft_lr = FT_LR[kind]
    config = s.cell_config(cell="method", arch=arch, data=ds["name"], train_n=train_n,
                           spec=spec, ft_steps=ft_steps, ft_lr=ft_lr, baseline=binfo["origin"])

    def compute(cfg: dict[str, Any]) -> dict[str, Any]:
        from slimkit.survey.measure import latency_ratio, model_record
        from slimkit.survey.methods import apply_method, int8_onnx_pair

        train_loader, test_loader = s.loaders(ds, train_n)
        base_rec = model_record(base, shape, test_loader)
        new, info = apply_method(copy.deepcopy(base), spec, shape, train_loader, ft_steps,
                                 lr=ft_lr)
        rec = model_record(new, shape, test_loader, **info.pop("record"))
        b = s.budget
        if spec["method"] == "ptq":
            with tempfile.TemporaryDirectory() as tmp:
                fp32, int8 = int8_onnx_pair(base, new, shape, tmp, train_loader)
                lat = latency_ratio(fp32, int8, shape, rounds=b.latency_rounds,
                                    budget_s=b.latency_budget_s)
            lat["backend"] = "onnxruntime: int8 QDQ vs fp32 ONNX"
        else:
            lat = latency_ratio(base, new, shape, rounds=b.latency_rounds,
                                budget_s=b.latency_budget_s)
            lat["backend"] = "torch eager"
        return {"base": base_rec, "new": rec, "latency": lat, "info": info,
                "description": describe(spec)}

    return s.cache.run(config, compute)


def _setting(s: Survey, kind: str, train_n: int, ft_steps: int, arch: str,
             lr: float | str | None = None, zoo_arch: str | None = None,
             paper: str | None = None) -> str:
    import platform

    lr_text = lr if isinstance(lr, str) else f"{lr or FT_LR[kind]:g}"

    ds = s.dataset(kind)
    b = s.budget
    n = f"{train_n:,}" if train_n else "all"
    origin = ""
    if zoo_arch is not None:  # where the baseline came from (a checkpoint, or trained here)
        origin = f"baseline: {s.baseline(zoo_arch, kind, train_n)[1]['origin']}; "
    return (f"Ours: {arch} on {ds['differs']}; {origin}budget '{b.name}': {n} training images, "
            f"test subset {b.test_n or 'all'}, fine-tune {ft_steps} Adam steps (lr "
            f"{lr_text}) after each method; latency on this host "
            f"({platform.machine()}, 1 thread, batch 1). "
            f"Paper: {paper or ds['paper']}, fully trained models, a phone.")


# -- Table 6 ----------------------------------------------------------------------------
T6_PUBLISHED = [
    {"variant": "baseline", "top-5": "82.12", "1/r_p": "1x", "1/r_T": "1x"},
    {"variant": "pruning FC1 (-40% MACs)", "top-5": "83.79", "1/r_p": "35x", "1/r_T": "0.97"},
    {"variant": "SVD FC1 (-20% MACs)", "top-5": "77.16", "1/r_p": "1.23", "1/r_T": "0.78"},
    {"variant": "SVD CONV2 (-40% MACs)", "top-5": "60.32", "1/r_p": "1.03", "1/r_T": "1.4"},
]
T6_VARIANTS = [
    ("pruning FC1 (-40% MACs)", {"method": "prune", "ratio": 0.4, "include": ["classifier.1"]}),
    ("SVD FC1 (-20% MACs)", {"method": "svd", "budget": 0.8, "layers": ["classifier.1"]}),
    ("SVD CONV2 (-40% MACs)", {"method": "svd", "budget": 0.6, "layers": ["features.3"]}),
]


def _inv(x: float | None) -> float | None:
    return None if not x else 1.0 / x


def table6(s: Survey) -> TableOut:
    """AlexNet-CIFAR: baseline vs pruning FC1 vs SVD FC1 vs SVD CONV2 (survey Table 6)."""
    b = s.budget
    rows = []
    base_rec = None
    for label, spec in T6_VARIANTS:
        r = method_cell(s, "alexnet", "cifar", b.cifar_train_n, spec, b.ft_steps)
        base_rec = r["base"]
        new = r["new"]
        lat = r["latency"]
        rows.append({"variant": label, "top-1": _pct(new["top1"]), "top-5": _pct(new["top5"]),
                     "params": new["params"], "param_bytes": new["param_bytes"],
                     "MACs": new["macs"],
                     "1/r_p": _x(base_rec["param_bytes"] / new["param_bytes"], 3),
                     "1/r_c": _x(base_rec["macs"] / new["macs"], 3),
                     "1/r_T": _x(_inv(lat["r_T"]), 2) + ("" if lat["stable"] else " (unstable)"),
                     "ranks": ", ".join(f"{k}: {v}" for k, v in r["info"].get("ranks", {}).items())})
    rows.insert(0, {"variant": "baseline", "top-1": _pct(base_rec["top1"]),
                    "top-5": _pct(base_rec["top5"]), "params": base_rec["params"],
                    "param_bytes": base_rec["param_bytes"], "MACs": base_rec["macs"],
                    "1/r_p": "1", "1/r_c": "1", "1/r_T": "1", "ranks": ""})
    ds = s.dataset("cifar")
    notes = [
        "1/r_p = original / compressed parameter bytes as stored; 1/r_T = original / "
        "compressed latency (higher is better for both, as in the survey's table).",
        "Pruning FC1 keeps the layer in CSR (fp32 value + int32 column per kept weight): at "
        "40% sparsity that is larger than the dense layer, so 1/r_p < 1. The paper's 35x "
        "is not a 40%-MAC cut of one layer (it matches Deep Compression's whole-model "
        "ratios); we do not reproduce it.",
        "SVD CONV2 here is AlexNet-CIFAR's second conv (features.3, 64->192 3x3), factored "
        "as a k x k conv to rank r then a 1x1 conv.",
    ]
    if ds["name"] != "cifar10":
        notes.insert(0, f"Data: {ds['differs']}.")
    return TableOut("table6", "Table 6: AlexNet on CIFAR-10, pruning vs SVD",
                    _setting(s, "cifar", b.cifar_train_n, b.ft_steps, "AlexNet-CIFAR (3.8 M "
                             "params)", zoo_arch="alexnet"), rows, T6_PUBLISHED, notes)


# -- Table 7 ----------------------------------------------------------------------------
def dc_pipeline(base, train_loader, test_loader, *, keep: dict[str, float] | None,
                 uniform_keep: float | None, ft_steps: int, kmeans_iter: int,
                 x_check=None, cycles: int = 1, retrain_lr: float = 5e-4) -> dict[str, Any]:
    """Deep Compression (Han, Mao & Dally 2016): prune -> masked retrain -> k-means sharing
    (conv 8-bit, fc 5-bit) -> centroid fine-tune -> relative indices + Huffman file.

    With ``cycles`` > 1 pruning is iterative as in Han et al. 2015: each cycle prunes every
    layer to keep ``target ** (cycle / cycles)`` of its weights by magnitude, then retrains
    ``ft_steps`` steps with the masks held."""
    from pathlib import Path

    import torch
    from torch import nn

    from slimkit.compress import attach_masks, squash
    from slimkit.deploy.deep_compression import load_compressed, save_compressed
    from slimkit.pruning import magnitude_prune
    from slimkit.quant.sharing import kmeans_share
    from slimkit.survey.measure import finetune
    from slimkit.train import evaluate

    layers = [n for n, m in base.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

    def prune(model, power: float):
        if keep is not None:
            return magnitude_prune(model, 0.0, include=list(keep),
                                   layer_sparsity={n: 1 - k ** power for n, k in keep.items()})
        return magnitude_prune(model, 1 - uniform_keep ** power, scope="layer")

    pruned = prune(base, 1.0)
    acc_pruned = evaluate(pruned, test_loader)          # one shot to the target, no retraining
    if cycles > 1:
        pruned = base
        for cycle in range(1, cycles + 1):
            pruned = attach_masks(prune(pruned, cycle / cycles), layers)
            finetune(pruned, train_loader, ft_steps, lr=retrain_lr)   # masked retraining
            pruned = squash(pruned).eval()
    else:
        attach_masks(pruned, layers)
        finetune(pruned, train_loader, ft_steps, lr=retrain_lr)   # masked retraining
        pruned = squash(pruned).eval()
    acc_retrained = evaluate(pruned, test_loader)
    weights = sum(pruned.get_submodule(n).weight.numel() for n in layers)
    density = sum(int((pruned.get_submodule(n).weight != 0).sum()) for n in layers) / weights
    bits = {n: (8 if isinstance(pruned.get_submodule(n), nn.Conv2d) else 5) for n in layers}
    shared = kmeans_share(pruned, bits=5, layer_bits=bits, max_iter=kmeans_iter).eval()
    finetune(shared, train_loader, max(1, ft_steps // 2), lr=1e-4)
    acc_final = evaluate(shared, test_loader)
    with tempfile.TemporaryDirectory() as tmp:
        packed = save_compressed(shared, Path(tmp) / "p.dc", huffman=False)
        huff = save_compressed(shared, Path(tmp) / "h.dc", huffman=True)
        same = None
        if x_check is not None:   # decode the file and compare outputs
            back = load_compressed(Path(tmp) / "h.dc", copy.deepcopy(base)).eval()
            with torch.no_grad():
                same = bool(torch.allclose(back(x_check), shared(x_check), atol=1e-5))
    fp32 = 4 * sum(p.numel() for p in base.parameters())
    return {"acc_pruned": acc_pruned, "acc_retrained": acc_retrained, "acc_final": acc_final,
            "density": density, "fp32_bytes": fp32, "packed_bytes": packed,
            "huffman_bytes": huff, "roundtrip_equal": same}


def table7(s: Survey) -> TableOut:
    """VGG-16 (CIFAR): Deep Compression pruning vs CP low-rank (survey Table 7)."""
    import torch

    from slimkit.survey.measure import finetune, model_record

    b = s.budget
    arch = b.t7_arch
    base, binfo = s.baseline(arch, "cifar", b.vgg_train_n)
    ds = s.dataset("cifar")
    first = next(n for n, m in base.named_modules() if type(m).__name__ == "Conv2d")
    keep = vgg16_keep(base) if arch == "vgg16" else None
    common = dict(arch=arch, data=ds["name"], train_n=b.vgg_train_n, baseline=binfo["origin"],
                  keep="han15" if keep else "uniform 0.075")

    def dc(cfg):
        train_loader, test_loader = s.loaders(ds, b.vgg_train_n, batch_size=64)
        return dc_pipeline(base, train_loader, test_loader, keep=keep, uniform_keep=0.075,
                            ft_steps=b.ft_steps, kmeans_iter=b.kmeans_iter)

    def cp(cfg):
        from slimkit.lowrank import LowRankConfig, decompose_with_report

        train_loader, test_loader = s.loaders(ds, b.vgg_train_n, batch_size=64)
        layers = list(b.cp_layers)
        kw = {"skip": (first,)} if layers == ["*"] else {"layers": tuple(layers)}
        res = decompose_with_report(base, LowRankConfig(method="cp", rank_selection="params",
                                                        budget=1 / 2.75, n_iter=b.cp_iter, **kw),
                                    input_shape=(3, 32, 32))
        finetune(res.model, train_loader, b.ft_steps)  # (N, 3, 32, 32) inputs
        rec = model_record(res.model, (3, 32, 32), test_loader)
        base_rec = model_record(base, (3, 32, 32), test_loader)
        return {"base": base_rec, "new": rec,
                "ranks": {r.name: r.rank for r in res.decomposed()}}

    torch.manual_seed(0)
    r_dc = s.cache.run(s.cell_config(cell="t7_dc", **common), dc)
    r_cp = s.cache.run(s.cell_config(cell="t7_cp", **common), cp)
    b1 = binfo["top1"]
    b5 = binfo["top5"]
    rows = [
        {"method": "baseline", "top-1": _pct(b1), "top-5": _pct(b5), "top-5 change": "",
         "1/r_p": "1", "how": binfo["origin"]},
        {"method": "pruning (Deep Compression)", "top-1": _pct(r_dc["acc_final"]["top1"]),
         "top-5": _pct(r_dc["acc_final"]["top5"]),
         "top-5 change": f"{100 * (r_dc['acc_final']['top5'] - b5):+.2f}",
         "1/r_p": f"{r_dc['fp32_bytes'] / r_dc['huffman_bytes']:.1f}x",
         "how": (f"magnitude pruning to Han et al.'s per-layer VGG-16 densities (22-58% per "
                 f"conv, 4% / 23% for the two FC layers; {r_dc['density']:.1%} overall)" if keep else
                 f"magnitude pruning of every layer to {r_dc['density']:.1%} density")
                + ", masked retraining, k-means conv 8-bit / fc 5-bit, Huffman; on-disk vs fp32"},
        {"method": "CP low-rank", "top-1": _pct(r_cp["new"]["top1"]),
         "top-5": _pct(r_cp["new"]["top5"]),
         "top-5 change": f"{100 * (r_cp['new']['top5'] - r_cp['base']['top5']):+.2f}",
         "1/r_p": f"{r_cp['base']['param_bytes'] / r_cp['new']['param_bytes']:.2f}x",
         "how": f"CP keeping 36% (1/2.75) of the params of {', '.join(b.cp_layers)}"
                f"{' (all convs but the first)' if list(b.cp_layers) == ['*'] else ''}, "
                f"{b.cp_iter} ALS sweeps, fine-tune"},
    ]
    published = [{"method": "pruning [20] (Deep Compression)", "top-5 change": "+0.41",
                  "1/r_p": "49x"},
                 {"method": "CP low-rank", "top-5 change": "-0.29", "1/r_p": "2.75x"}]
    if binfo["origin"].startswith("checkpoint"):
        trained = (f"the CIFAR VGG-16 (15 M params) trained to {_pct(b1)} on this test subset "
                   "(the baseline row's sha256 names the file; benchmarks/results/baselines*.md "
                   "say how each file was trained), with the budget's "
                   f"{b.ft_steps} fine-tune steps on {b.vgg_train_n or 'all'} images after "
                   "compression")
    else:
        trained = ("the CIFAR VGG-16 (15 M params) trained briefly here (its 30 MB trained file "
                   "is not in git; rebuild it with benchmarks/baselines_gpu.sh)")
    notes = ["The paper's VGG-16 numbers are on ImageNet with fully trained networks; ours is "
             f"{trained}, so the accuracy changes are not comparable, only the size ratios' "
             "order of magnitude."]
    if keep:
        notes.append("Pruning keeps Han et al.'s per-layer VGG-16 densities for the 13 convs "
                     "(22-58%). The paper's 49x rests on fc6/fc7, 120 M weights pruned to 3-4%, "
                     "which the CIFAR VGG-16 does not have, so our 1/r_p is bounded near 10x.")
    if list(b.cp_layers) != ["*"]:
        notes.append(f"CP touches only {', '.join(b.cp_layers)} in this budget, so its 1/r_p "
                     "is far below the paper's 2.75x; budget 'full' decomposes every conv.")
    notes.append("The VGG-16 Deep Compression file is written and measured, not decoded "
                 "back (decoding 1 M Huffman codes in Python takes ~10 s); the LeNet table "
                 "checks the same format's round trip.")
    if ds["name"] != "cifar10":
        notes.insert(0, f"Data: {ds['differs']}.")
    if arch != "vgg16":
        notes.insert(0, f"Budget '{b.name}' runs this table on {arch}, a stand-in for VGG-16 "
                     "(seconds instead of minutes): the pipeline is the same, the network is not.")
    return TableOut("table7", "Table 7: VGG-16, Deep Compression pruning vs CP low-rank",
                    _setting(s, "cifar", b.vgg_train_n, b.ft_steps,
                             "VGG-16 (CIFAR)" if arch == "vgg16" else f"{arch} (stand-in)",
                             paper="ImageNet"),
                    rows, published, notes)


# Han et al. 2015, Table 4 (the densities Deep Compression's Table 5 starts from): the share of
# each VGG-16 layer's weights kept, conv1_1 .. conv5_3; hidden FC layers as fc7 (4%), the
# last as fc8 (23%). ImageNet's 7.5% overall comes from fc6/fc7 (3-4% of 120 M weights); the
# CIFAR VGG-16's one 512x512 hidden FC is 2% of its weights.
VGG16_CONV_KEEP = (0.58, 0.22, 0.34, 0.36, 0.53, 0.24, 0.42, 0.32, 0.27, 0.34, 0.35, 0.29, 0.36)
VGG16_HIDDEN_FC_KEEP, VGG16_LAST_FC_KEEP = 0.04, 0.23


def vgg16_keep(model) -> dict[str, float]:
    """Per-layer keep ratios for a CIFAR VGG-16 (13 convs + linear layers), by layer order."""
    from torch import nn

    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    fcs = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if len(convs) != len(VGG16_CONV_KEEP) or not fcs:
        raise ValueError(f"expected VGG-16's 13 convs and a classifier, got {len(convs)} convs")
    return {**dict(zip(convs, VGG16_CONV_KEEP)), **{n: VGG16_HIDDEN_FC_KEEP for n in fcs[:-1]},
            fcs[-1]: VGG16_LAST_FC_KEEP}


# -- Deep Compression on the LeNets ---------------------------------------------------------
# Adam lr of Deep Compression's masked retraining, per LeNet. Measured on Fashion-MNIST, 1000
# steps per cycle, loss after sharing: LeNet-300-100 8 cycles 5e-4 -0.27, 2e-4 -0.69;
# LeNet-5 5 cycles 2e-4 -0.82, 5e-4 -1.13, 1e-3 -1.07 (one shot at 5e-4: -1.01 / -1.23)
DC_RETRAIN_LR = {"lenet300": 5e-4, "lenet5": 2e-4}
KEEP = {"lenet300": {"fc1": 0.08, "fc2": 0.09, "fc3": 0.26},   # Han et al. 2015, Tables 1-2
        "lenet5": {"conv1": 0.66, "conv2": 0.12, "fc1": 0.08, "fc2": 0.19}}
DC_PUBLISHED = [
    {"model": "LeNet-300-100", "error before": "1.64%", "error after": "1.58%",
     "size": "1070 KB -> 27 KB", "ratio": "40x"},
    {"model": "LeNet-5", "error before": "0.80%", "error after": "0.74%",
     "size": "1720 KB -> 44 KB", "ratio": "39x"},
]


def deep_compression(s: Survey) -> TableOut:
    """Deep Compression on LeNet-300-100 and LeNet-5: the paper's 40x / 39x."""
    b = s.budget
    ds = s.dataset("digits")
    rows = []
    for arch, label in (("lenet300", "LeNet-300-100"), ("lenet5", "LeNet-5")):
        base, binfo = s.baseline(arch, "digits", b.digits_train_n)

        def compute(cfg, base=base, arch=arch):
            train_loader, test_loader = s.loaders(ds, b.digits_train_n)
            x = next(iter(test_loader))[0][:4]
            return dc_pipeline(base, train_loader, test_loader, keep=KEEP[arch],
                                uniform_keep=None, ft_steps=b.lenet_ft_steps,
                                kmeans_iter=b.kmeans_iter, x_check=x, cycles=b.dc_cycles,
                                retrain_lr=DC_RETRAIN_LR[arch])

        r = s.cache.run(s.cell_config(cell="deep_compression", arch=arch, data=ds["name"],
                                      train_n=b.digits_train_n, baseline=binfo["origin"],
                                      keep=KEEP[arch], retrain_lr=DC_RETRAIN_LR[arch]), compute)
        rows.append({
            "model": label, "top-1 before": _pct(binfo["top1"]),
            "pruned (no retrain)": _pct(r["acc_pruned"]["top1"]),
            "pruned + retrain": _pct(r["acc_retrained"]["top1"]),
            "+ sharing + centroid FT": _pct(r["acc_final"]["top1"]),
            "loss (points)": f"{100 * (binfo['top1'] - r['acc_final']['top1']):.2f}",
            "density": f"{r['density']:.3f}",
            "fp32 bytes": r["fp32_bytes"], "file bytes (packed)": r["packed_bytes"],
            "file bytes (Huffman)": r["huffman_bytes"],
            "ratio": f"{r['fp32_bytes'] / r['huffman_bytes']:.1f}x",
            "file round trip": "exact" if r["roundtrip_equal"] else "MISMATCH",
        })
    lrs = " / ".join(f"{lr:g}" for lr in DC_RETRAIN_LR.values())
    cycles = (f"{b.dc_cycles} prune/retrain cycles (Han'15's iterative pruning: each cycle "
              "prunes every layer by magnitude to keep target^(cycle/cycles) of its weights), "
              f"each retraining {b.lenet_ft_steps} Adam steps (lr {lrs}) with the masks held"
              if b.dc_cycles > 1 else
              f"one-shot pruning, masked retraining ({b.lenet_ft_steps} Adam steps, lr {lrs})")
    notes = ["Pipeline: Han'15 per-layer keep fractions "
             f"{KEEP}; {cycles}; k-means "
             "sharing conv 8-bit / fc 5-bit, linear init; centroid fine-tune; relative indices (conv 8-bit, "
             "fc 5-bit gaps) and Huffman coding (`slimkit.deploy.deep_compression`). Ratio = "
             "fp32 parameter bytes / file bytes.",
             "The paper retrains for many epochs at each of its pruning steps; our retraining "
             "is the budget's steps, so the accuracy loss is larger than the paper's (which "
             "gains slightly). 'pruned (no retrain)' prunes the baseline to the targets in one "
             "shot."]
    notes.insert(0, f"Data: {ds['differs']} (paper: MNIST).")
    return TableOut("deep_compression", "Deep Compression on LeNet-300-100 and LeNet-5",
                    _setting(s, "digits", b.digits_train_n, b.lenet_ft_steps, "LeNets",
                             lr=lrs),
                    rows, DC_PUBLISHED, notes)


# -- Section 3.4 ------------------------------------------------------------------------
S34_TASKS = {
    "LeNet-5 / digits": ("lenet5", "digits", "conv1"),
    "AlexNet / CIFAR-10": ("alexnet", "cifar", "features.0"),
}


def s34_specs(first_conv: str) -> list[tuple[str, dict[str, Any]]]:
    return [("pruning", {"method": "prune", "ratio": 0.9}),
            ("low-rank (Tucker-2)", {"method": "tucker", "skip": [first_conv]}),
            ("depthwise separable", {"method": "separable", "exclude": [first_conv]}),
            ("quantization (int8)", {"method": "ptq"})]


def section34(s: Survey) -> TableOut:
    """Section 3.4: four families on LeNet-5 and AlexNet, the six ratios and a composite."""
    b = s.budget
    rows, data, short = [], {}, []
    for task, (arch, kind, first) in S34_TASKS.items():
        train_n = b.digits_train_n if kind == "digits" else b.cifar_train_n
        steps = b.lenet_ft_steps if kind == "digits" else b.ft_steps
        results = []
        for label, spec in s34_specs(first):
            r = method_cell(s, arch, kind, train_n, spec, steps)
            ratios = six_ratios(r["base"], r["new"], r["latency"]["r_T"])
            results.append((label, r, ratios, composite5(ratios)))
        best = min((c, lbl) for lbl, _, _, c in results if c is not None)[1]
        data[task] = {"base": results[0][1]["base"],
                      "methods": {lbl: {"new": r["new"], "ratios": rat, "latency": r["latency"]}
                                  for lbl, r, rat, _ in results}}
        for label, r, rat, comp in results:
            lat = r["latency"]
            rows.append({"task": task, "method": label,
                         "top-1": _pct(r["new"]["top1"]),
                         **{k: _x(v, 3) for k, v in rat.items()},
                         "r_T stable": "yes" if lat["stable"] else f"no ({lat['reason']})",
                         "composite": _x(comp, 3), "wins": "yes" if label == best else ""})
        base = results[0][1]["base"]["top1"]
        lost = [f"{lbl} (-{100 * (base - r['new']['top1']):.1f})" for lbl, r, _, _ in results
                if base - r["new"]["top1"] > 0.05]
        if lost:
            short.append(f"{task}: {', '.join(lost)} points after {steps} fine-tune steps")
    published = [
        {"task": "LeNet / MNIST", "winner": "pruning", "r_p": "0.21", "r_T": "0.44",
         "r_c": "0.3"},
        {"task": "AlexNet / CIFAR-10", "winner": "depthwise separable", "r_p": "0.32",
         "r_T": "0.23", "r_c": "0.13"},
        {"task": "both", "winner": "low-rank never wins", "r_p": "", "r_T": "", "r_c": ""},
    ]
    notes = [
        "Ratios are compressed / original (r_A = original / compressed top-1): lower is better. "
        "r_E: modelled energy on the survey's device 1 (Horowitz 45 nm costs). r_D: index bits "
        "(CSR for pruning, whose x/0 against the dense original is inf; 0/0 = 1). Composite: "
        "equal-weight mean of r_A, r_p, r_T, r_c, r_E "
        "(the survey's five criteria; r_D left out, its x/0 is infinite).",
        "r_T: torch eager at batch 1, 1 thread, interleaved rounds (pruning runs as CSR sparse "
        "layers; quantization as int8 ONNX vs fp32 ONNX in onnxruntime). 'stable: no' marks a "
        "ratio the latency protocol does not trust (spread or a busy host).",
        "Pruning: 90% of every layer's weights by magnitude, masked fine-tune, CSR storage. "
        "Low-rank: Tucker-2 with VBMF ranks on every conv but the first. Depthwise separable: "
        "every k x k conv but the first. Quantization: int8 PTQ, no fine-tune.",
    ]
    for kind in ("digits", "cifar"):
        ds = s.dataset(kind)
        notes.insert(0, f"Data ({kind}): {ds['differs']} (paper: {ds['paper']}).")
    if short:
        notes.append("Lost more than 5 points: " + "; ".join(short) + ". A fine-tune this "
                     "short ranks how fast a method recovers, not where it ends, so where our "
                     "winner differs from the paper's this budget is the first reason; the "
                     "paper fine-tunes to convergence.")
    return TableOut("section34", "Section 3.4: pruning, low-rank, depthwise separable and "
                    "quantization on LeNet-5 and AlexNet",
                    f"Ours: LeNet-5 on {s.dataset('digits')['name']} ({b.digits_train_n or 'all'} "
                    f"training images, fine-tune {b.lenet_ft_steps} Adam steps, lr "
                    f"{FT_LR['digits']:g}) and AlexNet-CIFAR on {s.dataset('cifar')['name']} "
                    f"({b.cifar_train_n or 'all'} training images, fine-tune {b.ft_steps} steps, "
                    f"lr {FT_LR['cifar']:g}), budget '{b.name}', latency on this "
                    "host. Paper: MNIST and CIFAR-10, fully trained, a phone.",
                    rows, published, notes, data)


# -- Table 8 ----------------------------------------------------------------------------
T8_PUBLISHED = [
    {"device": "device1", "DRAM": "3 GB", "cache": "L1 64 KB, L2 2 MB",
     "MAC rate": "691.3 MFLOPS", "best": "pruning"},
    {"device": "device2", "DRAM": "4 GB", "cache": "L1 32 KB, L2 1 MB",
     "MAC rate": "3.87 GFLOPS", "best": "depthwise separable conv"},
    {"device": "device3", "DRAM": "4 GB", "cache": "L1 38 KB, L2 2 MB",
     "MAC rate": "2.51 GFLOPS", "best": "low-rank"},
]


def _roof_ms(rec: dict[str, Any], device) -> float:
    return max(rec["macs"] / device.macs_per_s, rec["bytes_moved"] / device.dram_bw_bytes_per_s
               ) * 1e3


def table8(s: Survey, s34: TableOut, host=None) -> TableOut:
    """Best method per survey device (roofline) and on this host (measured r_T)."""
    from slimkit.metrics import SURVEY_DEVICES

    rows = []
    for task, d in s34.data.items():
        base = d["base"]
        devices = [(n, SURVEY_DEVICES[n], "roofline") for n in DEVICE_NAMES]
        if host is not None:
            devices.append(("this host", host, "roofline"))
        devices.append(("this host", None, "measured"))
        for name, dev, how in devices:
            scores = {}
            for label, m in d["methods"].items():
                energy_dev = name if name in DEVICE_NAMES else "device1"
                rat = six_ratios(base, m["new"], None, device=energy_dev)
                if dev is None:
                    rat["r_T"] = m["ratios"]["r_T"]
                else:
                    rat["r_T"] = _roof_ms(m["new"], dev) / _roof_ms(base, dev)
                scores[label] = (composite5(rat), rat["r_T"])
            ranked = sorted((c, lbl) for lbl, (c, _) in scores.items() if c is not None)
            best = ranked[0][1] if ranked else ""
            row = {"task": task, "device": name, "latency from": how,
                   "best (composite)": best,
                   "fastest": min(scores, key=lambda k: scores[k][1] if scores[k][1] is not None
                                  else float("inf"))}
            row.update({f"composite {lbl}": _x(c, 3) for lbl, (c, _) in scores.items()})
            if dev is not None:
                row["base latency (ms)"] = _x(_roof_ms(base, dev), 3)
            rows.append(row)
    notes = [
        "Roofline (metrics/devices.py): latency = max(MACs / MAC rate, bytes moved / DRAM "
        "bandwidth) with the survey's MAC rates and an assumed 3.2 GB/s phone bandwidth (the "
        "survey gives none); bytes moved at each method's storage precision (CSR values for "
        "pruning count only kept weights, int8 for quantization). Energy: the device's cache "
        "size decides SRAM vs DRAM costs (the host rows use device 1's energy).",
        "Composite: equal-weight mean of r_A, r_p, r_T, r_c, r_E (lower is better).",
        "These are estimates of the survey's phones, not measurements on them: the survey "
        "measured real devices. 'this host / measured' uses the r_T measured here.",
    ]
    if host is not None:
        notes.append(f"This host's profile: {host.macs_per_s / 1e9:.1f} GMAC/s, "
                     f"{host.dram_bw_bytes_per_s / 1e9:.1f} GB/s ({host.note}).")
    return TableOut("table8", "Table 8: the best method per device",
                    "Ours: the section 3.4 models, roofline estimates per survey device profile "
                    "and measured latency on this host. Paper: three phones, measured.",
                    rows, T8_PUBLISHED, notes)


# -- Distillation (Hinton et al. 2015) --------------------------------------------------------
def _student(hidden: int):
    """Hinton et al.'s student shape: 784-h-h-10 (the paper's h is 800)."""
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10))


# two-sided 95% quantiles of Student's t for df = 1..10 (beyond: the normal's 1.96 is within 6%)
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its two-sided 95% t confidence interval (0 for one value)."""
    m = statistics.mean(values)
    if len(values) < 2:
        return m, 0.0
    df = len(values) - 1
    t = _T95[df - 1] if df <= len(_T95) else 1.96
    return m, t * statistics.stdev(values) / len(values) ** 0.5


def distillation(s: Survey) -> TableOut:
    """Hinton et al. 2015: a student trained alone and with the teacher's soft targets on the
    same transfer set, epochs and seed; the share of the gap closed, with its seed spread."""
    b = s.budget
    ds = s.dataset("digits")
    teacher, tinfo = s.baseline("lenet5", "digits", b.digits_train_n)
    hidden, T, alpha, lr = 800, 4.0, 0.9, 1e-3

    def run(train, seed: int, *, kd: bool) -> float:
        import torch

        from slimkit import data
        from slimkit.distill import DistillConfig, distill
        from slimkit.train import evaluate, fit

        tl = data.loader(train, batch_size=128, train=True, seed=seed)
        torch.manual_seed(seed)
        st = _student(hidden)
        kw = dict(epochs=b.kd_epochs, optimizer="adam", lr=lr, weight_decay=0.0,
                  progress=False, seed=seed)
        if kd:
            distill(st, teacher, tl, DistillConfig(loss="kd", T=T, alpha=alpha), **kw)
        else:
            fit(st, tl, **kw)
        return evaluate(st.eval(), data.loader(s.split(ds, "test", b.kd_test_n),
                                               batch_size=1000))["top1"]

    common = dict(data=ds["name"], hidden=hidden, T=T, alpha=alpha, lr=lr,
                  teacher=tinfo["origin"])
    per_seed = []
    for seed in range(b.kd_seeds):
        def compute(cfg, seed=seed):
            from slimkit import data
            from slimkit.train import evaluate

            train = data.subset(s.split(ds, "train", b.digits_train_n), b.kd_train_n,
                                seed=100 + seed) if b.kd_train_n else s.split(ds, "train", 0)
            test = s.split(ds, "test", b.kd_test_n)
            return {"alone": run(train, seed, kd=False), "kd": run(train, seed, kd=True),
                    "teacher": evaluate(teacher, data.loader(test, batch_size=1000))["top1"],
                    "train_images": len(train), "test_images": len(test)}

        per_seed.append(s.cache.run(s.cell_config(cell="distill", seed=seed, **common), compute))

    def ceiling_cell(cfg):
        train = s.split(ds, "train", b.digits_train_n)
        return {"top1": run(train, 0, kd=False), "train_images": len(train)}

    ceiling = s.cache.run(s.cell_config(cell="distill-ceiling", **common), ceiling_cell)
    teacher_top1 = per_seed[0]["teacher"]
    gains = [100 * (r["kd"] - r["alone"]) for r in per_seed]
    closed_t = [(r["kd"] - r["alone"]) / (r["teacher"] - r["alone"])
                if r["teacher"] > r["alone"] else None for r in per_seed]
    closed_c = [(r["kd"] - r["alone"]) / (ceiling["top1"] - r["alone"])
                if ceiling["top1"] > r["alone"] else None for r in per_seed]
    rows = []
    for seed, r in enumerate(per_seed):
        rows.append({"seed": seed, "teacher top-1": _pct(r["teacher"]),
                     "student alone": _pct(r["alone"]), "student + KD": _pct(r["kd"]),
                     "KD gain (points)": f"{gains[seed]:+.2f}",
                     "gap to teacher closed": "" if closed_t[seed] is None
                     else f"{100 * closed_t[seed]:.0f}%",
                     "gap to student's ceiling closed": "" if closed_c[seed] is None
                     else f"{100 * closed_c[seed]:.0f}%"})
    gain_m, gain_h = mean_ci95(gains)
    verdict = None
    if len(per_seed) > 1:
        def share(xs):
            xs = [100 * x for x in xs if x is not None]
            if not xs:
                return ""
            m, h = mean_ci95(xs)
            return f"{m:.0f}% ± {h:.0f}"

        rows.append({"seed": f"mean ± 95% CI ({len(per_seed)} seeds)",
                     "teacher top-1": _pct(teacher_top1),
                     "student alone": _pct(statistics.mean(r["alone"] for r in per_seed)),
                     "student + KD": _pct(statistics.mean(r["kd"] for r in per_seed)),
                     "KD gain (points)": f"{gain_m:+.2f} ± {gain_h:.2f}",
                     "gap to teacher closed": share(closed_t),
                     "gap to student's ceiling closed": share(closed_c)})
        sd = statistics.stdev(gains)
        outside = gain_m - gain_h > 0
        verdict = (f"The gain is {'outside' if outside else 'within'} seed noise: its 95% "
                   f"interval is {gain_m - gain_h:+.2f} to {gain_m + gain_h:+.2f} points "
                   f"(per-seed sd {sd:.2f}, mean/sd {gain_m / sd if sd else float('inf'):.1f}).")
    rows.append({"seed": "ceiling: student alone on the budget's whole training set "
                         f"({ceiling['train_images']:,} images)",
                 "student alone": _pct(ceiling["top1"])})
    published = [{"setting": "MNIST, 2x1200 teacher -> 2x800 student, T=20, all 60,000 images",
                  "teacher errors": "67", "student alone": "146", "student + KD": "74",
                  "gap closed": "91%"}]
    n, n_test = per_seed[0]["train_images"], per_seed[0]["test_images"]
    notes = [f"Data: {ds['differs']} (paper: MNIST, 60,000 images). Test: {n_test:,} images.",
             f"Teacher: LeNet-5 ({tinfo['origin']}): more accurate and larger in compute (2.3 M "
             "MACs vs 1.3 M) than the student, though it has fewer parameters (431 K vs 1.3 M). "
             f"Student: Hinton's 784-{hidden}-{hidden}-10 MLP, no dropout, trained "
             f"{b.kd_epochs} epochs on the same {n:,} images (a new subset per seed), Adam lr "
             f"{lr}, alone (cross-entropy) and with soft targets (T={T}, alpha={alpha}); the "
             "same seed initialises both and orders their batches.",
             "Gap to teacher closed = (KD - alone) / (teacher - alone). The student's ceiling "
             "is the same MLP trained alone, same epochs, on the budget's whole training split "
             f"({ceiling['train_images']:,} images"
             + ("" if b.digits_train_n == 0 else "; all 60,000 at the full budget") + "): an "
             "MLP does not reach a CNN teacher on Fashion-MNIST, so (KD - alone) / (ceiling - "
             "alone) is the share of what labels alone could still teach it that the soft "
             "targets gave it"
             + ("." if b.digits_train_n == 0 else "; with fewer images than all, this ceiling "
                "is low and the share overstated."),
             "We do not reproduce the paper's 91%: it distils on all of MNIST, where the "
             "student alone is already within 0.8 points of the teacher and the gap is the "
             "teacher's regularisation (dropout, jitter). Here the transfer set is small so the "
             "gap is wide and mostly data; the soft targets close part of it."]
    if verdict:
        notes.append(verdict)
    return TableOut("distillation", "Distillation in Hinton's setting",
                    f"Ours: {ds['name']}, {b.kd_seeds} seed(s), budget '{b.name}'. Paper: MNIST.",
                    rows, published, notes,
                    {"per_seed": per_seed, "ceiling": ceiling, "gain_ci95": [gain_m, gain_h]})


# -- Sensitivity (Han et al. 2015, figure 6) -------------------------------------------------
SENS_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95)


def sensitivity(s: Survey) -> TableOut:
    """Per-layer top-1 of LeNet-5 with one layer magnitude-pruned at a time, no retraining."""
    b = s.budget
    ds = s.dataset("digits")
    base, binfo = s.baseline("lenet5", "digits", b.digits_train_n)

    def compute(cfg):
        from slimkit.pruning import sensitivity_analysis
        from slimkit.train import evaluate

        _, test_loader = s.loaders(ds, b.digits_train_n)
        sens = sensitivity_analysis(base, lambda m: evaluate(m, test_loader)["top1"],
                                    SENS_SPARSITIES)
        return {"baseline": sens.baseline, "sparsities": list(sens.sparsities),
                "accuracy": {k: list(v) for k, v in sens.accuracy.items()},
                "layer_params": dict(sens.layer_params)}

    r = s.cache.run(s.cell_config(cell="sensitivity", arch="lenet5", data=ds["name"],
                                  train_n=b.digits_train_n, baseline=binfo["origin"],
                                  sparsities=list(SENS_SPARSITIES)), compute)
    rows = [{"layer": name, "weights": r["layer_params"].get(name),
             **{f"{sp:.0%} pruned": _pct(a) for sp, a in zip(r["sparsities"], accs)}}
            for name, accs in r["accuracy"].items()]
    notes = [f"Data: {ds['differs']}. Each layer pruned alone by weight magnitude, no "
             f"retraining; baseline top-1 {_pct(r['baseline'])}.",
             "Han et al. (2015, figure 6) find the first conv and the last layers the most "
             "sensitive and the large FC layer the least: the same shape is what to look for "
             "here."]
    return TableOut("sensitivity", "Pruning sensitivity of LeNet-5, layer by layer",
                    f"Ours: LeNet-5 on {ds['name']}, test subset {b.test_n or 'all'}. "
                    "Paper: LeNet/AlexNet on MNIST/ImageNet.", rows, [], notes, r)
