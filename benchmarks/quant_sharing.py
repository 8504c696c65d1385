"""Weight sharing: k-means (Deep Compression) at 2-8 bits, per init, with and without
centroid fine-tuning, vs uniform quantization; pruning + sharing + Huffman file; HashedNets
at 1/8 and 1/64 vs a dense network with the same number of parameters.

    nice -n 10 python benchmarks/quant_sharing.py [--train 30000] [--ft-steps 60]
"""

from __future__ import annotations

import argparse
import copy
import io
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from slimkit import data, zoo
from slimkit.deploy.deep_compression import load_compressed, save_compressed
from slimkit.metrics import param_bytes
from slimkit.quant.core import QScheme, dequantize, qparams_from_range, quantize
from slimkit.quant.hashed import hash_compress
from slimkit.quant.sharing import kmeans_share
from slimkit.train import Hook, evaluate, fit

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared" / "datasets"
# Han et al. 2015, Tables 1-2: fraction of weights kept per layer
KEEP = {"lenet300": {"fc1": 0.08, "fc2": 0.09, "fc3": 0.26},
        "lenet5": {"conv1": 0.66, "conv2": 0.12, "fc1": 0.08, "fc2": 0.19}}


def tensors(split: str, n: int | None, seed: int = 0) -> TensorDataset:
    ds = data.load("fashion-mnist", root=str(SHARED), split=split)
    idx = (torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
           if n else torch.arange(len(ds)))
    xs, ys = zip(*(ds[int(i)] for i in idx))
    return TensorDataset(torch.stack(xs), torch.tensor(ys))


def loader(ds: TensorDataset, train: bool = True) -> DataLoader:
    return DataLoader(ds, batch_size=128 if train else 1000, shuffle=train,
                      generator=torch.Generator().manual_seed(0) if train else None)


def float_model(arch: str, train: TensorDataset, epochs: int) -> tuple[nn.Module, str]:
    path = ROOT / "checkpoints" / f"{arch}_fashion.pt"
    if path.is_file():
        from slimkit.train import load_model
        return load_model(path).eval(), f"checkpoint {path.relative_to(ROOT.parent)}"
    torch.manual_seed(0)
    model = zoo.create(arch)
    fit(model, loader(train), epochs=epochs, lr=0.05, progress=False)
    return model.eval(), (f"no checkpoint: trained here, {epochs} epochs on {len(train)} "
                          "images, SGD lr 0.05 cosine")


def fp32_state_bytes(model: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def file_bytes(model: nn.Module, skeleton: nn.Module, x: torch.Tensor) -> int:
    with tempfile.TemporaryDirectory() as d:
        size = save_compressed(model, Path(d) / "m.dc", huffman=True)
        back = load_compressed(Path(d) / "m.dc", skeleton).eval()
        if not torch.equal(back(x), model.eval()(x)):
            raise RuntimeError("Deep Compression file round trip changed the outputs")
    return size


def uniform(model: nn.Module, bits: int) -> nn.Module:
    out = copy.deepcopy(model)
    s = QScheme(bits=bits, symmetric=True, per_channel=False)
    with torch.no_grad():
        for m in out.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                sc, zp = qparams_from_range(m.weight.min(), m.weight.max(), s)
                m.weight.copy_(dequantize(quantize(m.weight, sc, zp, s), sc, zp, s))
    return out


class Masks(Hook):
    """Keeps pruned weights at zero during retraining (Han et al. 2015)."""

    def __init__(self, model: nn.Module) -> None:
        self.masks = {n: m.weight != 0 for n, m in model.named_modules()
                      if isinstance(m, (nn.Conv2d, nn.Linear))}

    @torch.no_grad()
    def on_after_backward(self, model: nn.Module) -> None:
        for n, k in self.masks.items():
            model.get_submodule(n).weight.grad.mul_(k)

    @torch.no_grad()
    def on_step_end(self, model: nn.Module, step: int) -> None:
        for n, k in self.masks.items():
            model.get_submodule(n).weight.mul_(k)


def prune(model: nn.Module, keep: dict[str, float]) -> nn.Module:
    out = copy.deepcopy(model)
    with torch.no_grad():
        for name, frac in keep.items():
            w = out.get_submodule(name).weight
            k = max(1, round(frac * w.numel()))
            thr = w.abs().flatten().topk(k).values[-1]
            w.mul_(w.abs() >= thr)
    return out


def ft(model: nn.Module, train: TensorDataset, steps: int, lr: float, hooks=(),
       optimizer: str = "adam") -> float:
    t0 = time.perf_counter()
    ld = loader(train)
    fit(model.train(), ld, epochs=math.ceil(steps / len(ld)), optimizer=optimizer, lr=lr,
        weight_decay=0.0, hooks=list(hooks), progress=False, max_steps=steps)
    model.eval()
    return time.perf_counter() - t0


def sharing_table(arch: str, base: nn.Module, train, test, args) -> list[str]:
    x = train.tensors[0][:8]
    ref = evaluate(base, test)["top1"]
    fp32 = fp32_state_bytes(base)
    rows = [f"### {arch}: k-means sharing of every conv/linear (dense, no pruning)", "",
            f"float top-1 {ref:.4f}; fp32 state_dict file {fp32:,} bytes; param_bytes "
            f"{param_bytes(base):,}. Centroid fine-tuning: {args.ft_steps} Adam steps, lr "
            f"{args.ft_lr}, no weight decay (Adam rather than the paper's SGD: a centroid's "
            "gradient sums the gradients of thousands of weights, and plain SGD at lr 1e-3 "
            "took 2-bit models to chance within 5 steps in a trial run). Uniform = symmetric per-tensor min/max "
            "quantization of the same weights (no fine-tuning).", "",
            "| bits | init | uniform top-1 | k-means top-1 | k-means + FT top-1 | "
            "storage_bytes | file bytes (Huffman) | ratio vs fp32 file |",
            "|---|---|---|---|---|---|---|---|"]
    for bits in args.bits:
        uni = evaluate(uniform(base, bits), test)["top1"]
        for init in args.inits:
            shared = kmeans_share(base, bits=bits, init=init).eval()
            acc0 = evaluate(shared, test)["top1"]
            tuned = copy.deepcopy(shared)
            ft(tuned, train, args.ft_steps, args.ft_lr)
            acc1 = evaluate(tuned, test)["top1"]
            size = file_bytes(tuned, zoo.create(arch).eval(), x)
            rows.append(f"| {bits} | {init} | {uni:.4f} | {acc0:.4f} | {acc1:.4f} | "
                        f"{param_bytes(tuned):,} | {size:,} | {fp32 / size:.1f}x |")
            print(rows[-1], flush=True)
    return rows + [""]


def deep_compression(arch: str, base: nn.Module, train, test, args) -> list[str]:
    x = train.tensors[0][:8]
    fp32 = fp32_state_bytes(base)
    ref = evaluate(base, test)["top1"]
    pruned = prune(base, KEEP[arch])
    acc_p0 = evaluate(pruned, test)["top1"]
    ft(pruned, train, args.prune_steps, 0.01, [Masks(pruned)], optimizer="sgd")
    acc_p = evaluate(pruned, test)["top1"]
    layer_bits = {n: (8 if isinstance(m, nn.Conv2d) else 5) for n, m in pruned.named_modules()
                  if isinstance(m, (nn.Conv2d, nn.Linear))}
    shared = kmeans_share(pruned, bits=5, init="linear", layer_bits=layer_bits).eval()
    acc_s0 = evaluate(shared, test)["top1"]
    ft(shared, train, args.ft_steps, args.ft_lr)
    acc_s = evaluate(shared, test)["top1"]
    with tempfile.TemporaryDirectory() as d:
        packed = save_compressed(shared, Path(d) / "p.dc", huffman=False)
    huff = file_bytes(shared, zoo.create(arch).eval(), x)
    density = sum(int((m.weight != 0).sum()) for m in pruned.modules()
                  if isinstance(m, (nn.Conv2d, nn.Linear))) / sum(
        m.weight.numel() for m in pruned.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    return [f"### {arch}: Deep Compression pipeline (prune -> share -> Huffman)", "",
            f"Per-layer keep fractions {KEEP[arch]} (Han'15), density {density:.3f}; masked "
            f"retraining {args.prune_steps} SGD steps lr 0.01; sharing: conv 8-bit, fc 5-bit "
            f"codes, linear init, relative indices conv 8-bit / fc 5-bit; centroid FT "
            f"{args.ft_steps} Adam steps lr {args.ft_lr}.", "",
            "| stage | top-1 | bytes | ratio vs fp32 file |", "|---|---|---|---|",
            f"| float | {ref:.4f} | {fp32:,} | 1.0x |",
            f"| pruned (no retrain) | {acc_p0:.4f} | | |",
            f"| pruned + retrain | {acc_p:.4f} | | |",
            f"| + k-means sharing | {acc_s0:.4f} | | |",
            f"| + centroid FT, packed file | {acc_s:.4f} | {packed:,} | {fp32 / packed:.1f}x |",
            f"| + Huffman file | {acc_s:.4f} | {huff:,} | {fp32 / huff:.1f}x |", ""]


def dense_equivalent(n_params: int) -> nn.Module:
    """784-h-h/3-10 MLP (LeNet-300-100 shape) with about ``n_params`` parameters."""
    h = 1
    while True:
        h2 = max(1, round((h + 1) / 3))
        if 784 * (h + 1) + (h + 1) * h2 + h2 * 10 + (h + 1) + h2 + 10 > n_params:
            break
        h += 1
    h2 = max(1, round(h / 3))
    return nn.Sequential(nn.Flatten(), nn.Linear(784, h), nn.ReLU(), nn.Linear(h, h2),
                         nn.ReLU(), nn.Linear(h2, 10))


def hashed_table(train, test, args) -> list[str]:
    rows = ["### HashedNets vs equivalent dense network (LeNet-300-100 shape, from scratch)",
            "", f"Each trained from scratch: {args.hash_epochs} epochs on {len(train)} images, "
            "SGD lr 0.05 cosine, batch 128. 'Equivalent dense' is a 784-h-h/3-10 MLP with "
            "about as many real parameters as the hashed network (the paper's NN baseline).",
            "", "| network | real params | virtual params | storage_bytes | top-1 |",
            "|---|---|---|---|---|"]

    def run(model: nn.Module) -> float:
        torch.manual_seed(0)
        fit(model, loader(train), epochs=args.hash_epochs, lr=0.05, progress=False)
        return evaluate(model.eval(), test)["top1"]

    torch.manual_seed(0)
    full = zoo.create("lenet300")
    virtual = sum(p.numel() for p in full.parameters())
    acc = run(full)
    rows.append(f"| LeNet-300-100 dense | {virtual:,} | {virtual:,} | {param_bytes(full):,} | "
                f"{acc:.4f} |")
    for c, label in ((1 / 8, "1/8"), (1 / 64, "1/64")):
        torch.manual_seed(0)
        h = hash_compress(zoo.create("lenet300"), compression=c, init="random")
        real = sum(p.numel() for p in h.parameters())
        acc_h = run(h)
        rows.append(f"| HashedNets {label} | {real:,} | {virtual:,} | {param_bytes(h):,} | "
                    f"{acc_h:.4f} |")
        torch.manual_seed(0)
        d = dense_equivalent(real)
        n = sum(p.numel() for p in d.parameters())
        acc_d = run(d)
        rows.append(f"| equivalent dense {d[1].out_features}-{d[3].out_features} ({label}) | "
                    f"{n:,} | {n:,} | {param_bytes(d):,} | {acc_d:.4f} |")
        print(rows[-2], rows[-1], sep="\n", flush=True)
    return rows + [""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=30000)
    ap.add_argument("--bits", type=int, nargs="+", default=[2, 3, 4, 6, 8])
    ap.add_argument("--inits", nargs="+", default=["linear", "density", "random"])
    ap.add_argument("--archs", nargs="+", default=["lenet300", "lenet5"])
    ap.add_argument("--ft-steps", type=int, default=60)
    ap.add_argument("--ft-lr", type=float, default=1e-4)
    ap.add_argument("--prune-steps", type=int, default=300)
    ap.add_argument("--hash-epochs", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "results" / "quant_sharing.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    cmd = "nice -n 10 python benchmarks/quant_sharing.py " + " ".join(sys.argv[1:])
    train = tensors("train", args.train)
    test = DataLoader(tensors("test", None), batch_size=1000)
    lines = ["# Weight sharing and HashedNets (Fashion-MNIST)", "",
             f"Command: `{cmd.strip()}`", "",
             f"Setup: 1 CPU thread, seed 0, training subset {len(train)} images (seeded), "
             "full 10,000-image test set. File bytes: `save_compressed` safetensors file "
             "(codebooks, packed or Huffman-coded codes and relative indices, fp32 biases); "
             "its round trip is checked to give identical outputs. Ratios are against the "
             "fp32 `torch.save(state_dict)` file.", ""]
    for arch in args.archs:
        base, how = float_model(arch, train, 3 if arch == "lenet300" else 2)
        lines += [f"## {arch}", "", f"- float model: {how}", ""]
        lines += sharing_table(arch, base, train, test, args)
        lines += deep_compression(arch, base, train, test, args)
    lines += hashed_table(train, test, args)
    lines += [f"Total wall time: {time.perf_counter() - t0:.0f} s.", ""]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
