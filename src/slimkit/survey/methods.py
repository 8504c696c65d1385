"""The compressions the survey's tables compare, each `(model, spec) -> (new model, info)`.

A spec is a plain dict (it is part of a cell's config):

- ``{"method": "prune", "ratio": r, "include": [...], "exclude": [...]}``: Han et al. 2015
  magnitude pruning of the selected layers (`slimkit.compress.MagnitudeConfig`), masked
  fine-tuning, then CSR storage (`slimkit.pruning.to_sparse`), so size, MACs and latency are
  those of the sparse model.
- ``{"method": "svd", "budget": b, "layers": [...]}``: truncated SVD keeping ``b`` of each
  layer's MACs (`slimkit.lowrank`, rank_selection="macs"), the survey's Table 6 columns.
- ``{"method": "cp", "budget": b, "layers": [...] | None, "n_iter": k}``: CP (Lebedev et al.
  2015) keeping ``b`` of each layer's parameters.
- ``{"method": "tucker", "skip": [...]}``: Tucker-2 with VBMF ranks (Kim et al. 2016).
- ``{"method": "separable", "exclude": [...]}``: depthwise k x k + pointwise 1 x 1 from the
  original kernel (`slimkit.lowrank.separable`, MobileNets).
- ``{"method": "ptq"}``: int8 post-training quantization, per-channel weights
  (`slimkit.quant.ptq`), timed as an int8 ONNX model in onnxruntime.

Every method is followed by the same short fine-tune (``ft_steps`` Adam steps, lr 1e-4),
except PTQ (none).
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["apply_method", "describe"]


def describe(spec: dict[str, Any]) -> str:
    m = spec["method"]
    if m == "prune":
        where = ", ".join(spec.get("include") or ["all layers"])
        return f"magnitude pruning {spec['ratio']:.0%} of the weights of {where}, CSR storage"
    if m == "svd":
        return f"SVD keeping {spec['budget']:.0%} of the MACs of {', '.join(spec['layers'])}"
    if m == "cp":
        where = ", ".join(spec["layers"]) if spec.get("layers") else "every conv but the first"
        return f"CP keeping {spec['budget']:.0%} of the parameters of {where}"
    if m == "tucker":
        return "Tucker-2 with VBMF ranks on every conv but the first"
    if m == "separable":
        return "depthwise-separable replacement of every k x k conv but the first"
    if m == "ptq":
        return "int8 PTQ (per-channel weights, min/max), int8 ONNX in onnxruntime"
    return m


def apply_method(model, spec: dict[str, Any], input_shape: Sequence[int], train_loader,
                 ft_steps: int, lr: float = 1e-4) -> tuple[Any, dict[str, Any]]:
    """(compressed model in eval mode, info: what was done, plus kwargs for the record)."""
    from slimkit.survey.measure import finetune

    m = spec["method"]
    if m == "prune":
        from slimkit.compress import MagnitudeConfig, compress, squash
        from slimkit.pruning import to_sparse

        cfg = MagnitudeConfig(ratio=spec["ratio"], include=tuple(spec.get("include") or ("*",)),
                              exclude=tuple(spec.get("exclude") or ()))
        res = compress(model, cfg)
        masked = res.model   # masks stay through fine-tuning (parametrized weights)
        finetune(masked, train_loader, ft_steps, lr=lr)
        dense = squash(masked).eval()
        sparse = to_sparse(dense, min_sparsity=max(0.0, spec["ratio"] - 0.05))
        return sparse, {"record": {"skip_zeros": True},
                        "delivered": res.report.summary.get("delivered")}
    if m in ("svd", "cp", "tucker"):
        from slimkit.lowrank import LowRankConfig, decompose_with_report

        if m == "svd":
            cfg = LowRankConfig(method="svd", rank_selection="macs", budget=spec["budget"],
                                layers=tuple(spec["layers"]))
        elif m == "cp":
            kw = ({"layers": tuple(spec["layers"])} if spec.get("layers")
                  else {"skip": tuple(spec.get("skip") or ())})
            cfg = LowRankConfig(method="cp", rank_selection="params", budget=spec["budget"],
                                n_iter=spec.get("n_iter", 25), **kw)
        else:
            cfg = LowRankConfig(method="tucker", rank_selection="vbmf",
                                skip=tuple(spec.get("skip") or ()))
        res = decompose_with_report(model, cfg, input_shape=input_shape)
        new = res.model
        finetune(new, train_loader, ft_steps, lr=lr)
        ranks = {r.name: r.rank for r in res.decomposed()}
        return new, {"record": {}, "ranks": {k: (list(v) if isinstance(v, tuple) else v)
                                             for k, v in ranks.items()}}
    if m == "separable":
        from slimkit.lowrank.separable import SeparableConfig, separate

        res = separate(model, SeparableConfig(exclude=tuple(spec.get("exclude") or ())),
                       input_shape=input_shape)
        new = res.model
        finetune(new, train_loader, ft_steps, lr=lr)
        return new, {"record": {}, "layers": [r.name for r in res.decomposed()]}
    if m == "ptq":
        from slimkit.quant.ptq import PTQConfig, quantize_ptq

        q = quantize_ptq(model, PTQConfig(), calib=train_loader)
        return q, {"record": {"weight_bits": 8, "act_bits": 8}}
    raise ValueError(f"unknown survey method {m!r}")


def int8_onnx_pair(original, quantized, input_shape: Sequence[int], folder, calib) -> tuple:
    """(fp32 ONNX path of the original, int8 ONNX path of the quantized model)."""
    from pathlib import Path

    from slimkit.deploy.onnx_int8 import export_int8_onnx
    from slimkit.metrics import export_onnx

    folder = Path(folder)
    fp32 = export_onnx(original, input_shape, folder / "fp32.onnx")
    int8 = export_int8_onnx(quantized, input_shape, folder / "int8.onnx", calib=calib)
    return fp32, int8
