"""int8 coverage in onnxruntime: for every zoo network and every held-out graph
(tests/graph/_heldout.py), PTQ (W8A8, random calibration data) -> ``export_int8_onnx(...,
calib=...)`` -> onnxruntime, then how many conv/linear calls run as integer kernels
(``int8_report``), the SQNR and top-1 agreement of the file against the simulated model, and
what stays float with the reason. Random weights: coverage and agreement, not accuracy.

``--before REV`` also runs the same measurement with the library of git revision ``REV``
(extracted to a temporary folder, imported first) for a before/after table.

    nice -n 10 python benchmarks/int8_coverage.py --before 6ac92f7
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "tests"))

NOTE = ('Fidelity: on random weights the centred SQNR (the input-dependent part) is the meaningful one; it ma'
    'tches the previous export within 1 dB on most networks and is 2-6 dB lower where more ops now run in'
    ' int8 behind calibrated grids (concat outputs: inception_pool, the U-Nets, densenet_block; googlenet'
    ', whose random output barely depends on its input). A pool or add producing the network output runs '
    "in float by design, so the logits are not rounded to 8 bits (the squeezenets' final GlobalAveragePoo"
    'l). *Before* is the library at the named revision, measured by this same script.')
EXCLUDE = {"unet_convtranspose": ("up",), "instancenorm_prelu": ("n1", "a1")}  # layers PTQ does not wrap


def networks() -> dict[str, tuple]:
    from graph._heldout import HELDOUT
    from slimkit import zoo

    nets = {f"zoo/{n}": (lambda n=n: zoo.create(n), zoo.input_shape(n)) for n in zoo.names()}
    nets.update({f"heldout/{n}": v for n, v in HELDOUT.items()})
    return nets


def _mac_calls(model: nn.Module, x: torch.Tensor) -> int:
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in model.modules()
             if type(m).__name__ in ("QuantConv2d", "QuantLinear")]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return len(calls)


def measure(name: str, build, shape) -> dict:
    from slimkit.deploy.onnx_export import OnnxModel
    from slimkit.deploy.onnx_int8 import export_int8_onnx, int8_report
    from slimkit.quant.ptq import PTQConfig, quantize_ptq

    torch.manual_seed(0)
    model = build().eval()
    calib = [torch.randn(16, *shape) for _ in range(2)]
    row = {"net": name}
    try:
        sim = quantize_ptq(model, PTQConfig(exclude=EXCLUDE.get(name.split("/")[1], ())), calib)
    except Exception as e:  # noqa: BLE001 - a benchmark row records the failure
        return {**row, "error": f"PTQ: {type(e).__name__}: {str(e)[:90]}"}
    x = torch.randn(64, *shape)
    row["mac_calls"] = _mac_calls(sim, x[:1])
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            path = export_int8_onnx(sim, shape, Path(tmp) / "q.onnx", calib=calib)
            got = OnnxModel(path).run(x.numpy())
            rep = int8_report(path)
        except Exception as e:  # noqa: BLE001
            return {**row, "error": f"export/run: {type(e).__name__}: {str(e)[:90]}"}
    want = sim(x).detach().numpy()
    signal, noise = float((want.astype(np.float64) ** 2).sum()), float(((want - got).astype(np.float64) ** 2).sum())
    row["sqnr_db"] = None if signal == 0 else 10 * np.log10(signal / max(noise, 1e-30))
    row["top1_agree"] = float((got.argmax(1) == want.argmax(1)).mean())
    # SQNR of the input-dependent part (outputs centred on their batch mean): random deep nets
    # give near-constant outputs, whose plain SQNR mostly measures the (exact) bias
    var = float(want.astype(np.float64).var(0).sum() * len(want))  # squared deviations, all samples
    row["sqnr_centred_db"] = None if var == 0 else 10 * np.log10(var / max(noise, 1e-30))
    row["mac_int8"] = rep.mac_int8
    row["float_ops"] = dict(Counter(op for _, op in rep.float_ops))
    reasons = getattr(rep, "reasons", None)
    row["mac_float"] = [(n, (rep.why(n) if reasons is not None else "")) for n in rep.mac_float]
    return row


def run_all() -> list[dict]:
    torch.set_num_threads(1)
    return [measure(name, build, shape) for name, (build, shape) in networks().items()]


def _before(rev: str) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        arch = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT.parent, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=arch, check=True)
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}
        out = subprocess.run([sys.executable, __file__, "--json"], env=env, check=True, capture_output=True,
                             text=True).stdout
    return {r["net"]: r for r in json.loads(out.strip().splitlines()[-1])}


def _cell(r: dict | None) -> str:
    if r is None:
        return "-"
    if "error" in r:
        return "fails (" + r["error"].split(":")[0] + ")"
    return f"{r['mac_int8']}/{r['mac_calls']}"


def write(rows: list[dict], before: dict[str, dict] | None, rev: str | None, seconds: float, out: Path,
          load: str) -> None:
    def sh(cmd: str) -> str:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

    model = sh("lscpu | sed -n 's/^Model name: *//p'")
    flags = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in sh("grep -m1 ^flags /proc/cpuinfo").split()]
    lines = [
        "# int8 coverage in onnxruntime (zoo + held-out graphs)",
        "",
        "Each network: random init (seed 0), `quantize_ptq` W8A8 (per-channel weights, min/max) on 2 random "
        "batches of 16, `export_int8_onnx(..., calib=...)` (scheme chosen for this CPU), onnxruntime "
        f"{_ort_version()} with all graph optimisations. *int8 MACs*: conv/linear calls onnxruntime runs as "
        "integer kernels (QLinearConv, QGemm, QLinearMatMul, MatMulIntegerToFloat) / conv/linear calls in the "
        "PTQ model (a module called 3 times counts 3). SQNR and top-1 agreement: the int8 file against the "
        "simulated-quantized model on 64 random inputs (top-1 over dim 1; for the U-Nets that is per pixel); "
        "*centred*: the same error against the outputs minus their batch mean (random deep nets give "
        "near-constant outputs, whose plain SQNR mostly measures the bias, which stays exact). "
        "Random weights: this measures coverage and fidelity, not accuracy. "
        "`unet_convtranspose` and `instancenorm_prelu` exclude the layers PTQ does not wrap "
        "(ConvTranspose2d; InstanceNorm2d, PReLU).",
        "",
        f"| network | int8 MACs before ({rev}) | int8 MACs after | SQNR dB | SQNR dB centred (before) | "
        "top-1 agree | float compute nodes (op x count) |" if before is not None else
        "| network | int8 MACs | SQNR dB | SQNR dB centred | top-1 agree | float compute nodes (op x count) |",
        "|---|---|---|---|---|---|---|" if before is not None else "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r["net"]] + ([_cell(before.get(r["net"]))] if before is not None else []) + [_cell(r)]
        if "error" in r:
            cells += ["-", "-", r["error"]]
        else:
            flt = ", ".join(f"{k} x{v}" for k, v in sorted(r["float_ops"].items())) or "none"
            db = "n/a (output all 0)" if r["sqnr_db"] is None else f"{r['sqnr_db']:.1f}"
            dc = "n/a" if r.get("sqnr_centred_db") is None else f"{r['sqnr_centred_db']:.1f}"
            b = (before or {}).get(r["net"], {})
            if before is not None:
                dc += f" ({b['sqnr_centred_db']:.1f})" if b.get("sqnr_centred_db") is not None else " (-)"
            cells += [db, dc, f"{r['top1_agree']:.2f}", flt]
        lines.append("| " + " | ".join(cells) + " |")
    tot = lambda rs: (sum(r.get("mac_int8", 0) for r in rs), sum(r.get("mac_calls", 0) for r in rs))  # noqa: E731
    a = tot(rows)
    lines += ["", f"Total after: {a[0]} of {a[1]} conv/linear calls in int8."]
    if before is not None:
        b = tot(before.values())
        lines[-1] += (f" Before: {b[0]} of {b[1]} (failed exports count 0 of their calls; "
                      f"{sum('error' in r for r in before.values())} networks failed).")
    left = [(r["net"], n, why) for r in rows for n, why in r.get("mac_float", [])]
    lines += ["", "Conv/linear left in float, with `int8_report`'s reason:", ""]
    lines += [f"- {net}: `{n}`: {why}" for net, n, why in left] or ["- none"]
    lines += ["", "Other float nodes are ops without an onnxruntime int8 kernel (LayerNormalization, "
              "InstanceNormalization, BatchNormalization of a norm that cannot fold, Erf/Div of GELU, "
              "HardSigmoid/HardSwish, ReduceMean, ConvTranspose) or Add/Mul with a constant operand (a norm's "
              "affine, a MatMul bias); `int8_report(path).reasons` names each with its reason."]
    lines += ["", NOTE]
    lines += ["", f"CPU: {model} ({', '.join(flags)}); {os.cpu_count()} cores; load at the start: "
              f"`{load}`; torch threads 1; {seconds:.0f} s.",
              f"Python {platform.python_version()}, torch {torch.__version__}.", "",
              "Command: `nice -n 10 python benchmarks/int8_coverage.py" + (f" --before {rev}`" if rev else "`"), ""]
    out.write_text("\n".join(lines))


def _ort_version() -> str:
    import onnxruntime as ort

    return ort.__version__


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", metavar="REV", help="also measure the library at this git revision")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON (used for --before)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "int8_coverage.md")
    args = ap.parse_args()
    if args.json:
        print(json.dumps(run_all()))
        return
    t0 = time.time()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rows = run_all()
    before = _before(args.before) if args.before else None
    write(rows, before, args.before, time.time() - t0, args.out, load)
    print(args.out.read_text())


if __name__ == "__main__":
    main()
