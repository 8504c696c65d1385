"""What every survey cell measures of a compressed model against its original.

Accuracy (top-1/top-5 on the task's test subset), parameter bytes as stored (CSR for sparse
layers, int8 for quantized ones: `slimkit.metrics.param_bytes`), MACs (non-zero ones for
pruned models), modelled energy per survey device (`metrics.energy`, Horowitz 45 nm),
index bits, the bytes a roofline moves (`metrics.devices.roofline`) and r_T from interleaved
latency rounds (`metrics.compare_latency`, 1 thread, batch 1). Everything is plain JSON so a
cell can store it.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["finetune", "latency_ratio", "model_record", "six_ratios", "DEVICE_NAMES"]

DEVICE_NAMES = ("device1", "device2", "device3")


def model_record(model, input_shape: Sequence[int], test_loader, *, weight_bits: int = 32,
                 act_bits: int = 32, skip_zeros: bool = False,
                 param_bytes: int | None = None) -> dict[str, Any]:
    """Accuracy, size, MACs, energy per survey device, index bits and roofline bytes."""
    from slimkit import metrics
    from slimkit.train import evaluate

    acc = evaluate(model, test_loader)
    energy = {}
    bytes_moved = None
    for name in DEVICE_NAMES:
        est = metrics.roofline(model, input_shape, metrics.SURVEY_DEVICES[name],
                               weight_bits=weight_bits, act_bits=act_bits,
                               skip_zeros=skip_zeros)
        energy[name] = est.energy_uj
        bytes_moved = est.bytes_moved
    return {
        "top1": float(acc["top1"]), "top5": float(acc["top5"]),
        "params": int(metrics.count_params(model)),
        "param_bytes": int(param_bytes if param_bytes is not None else metrics.param_bytes(model)),
        "macs": int(metrics.count_macs(model, input_shape, skip_zeros=skip_zeros).total),
        "energy_uj": energy, "bytes_moved": float(bytes_moved),
        "index_bits": int(metrics.index_space(model).bits),
        "weight_bits": weight_bits, "act_bits": act_bits,
    }


def latency_ratio(original, compressed, input_shape: Sequence[int], *, rounds: int,
                  budget_s: float) -> dict[str, Any]:
    """r_T = compressed / original latency at batch 1, 1 thread, from interleaved rounds;
    modules or ONNX paths. Kept with its spread and whether the protocol calls it stable."""
    from slimkit.metrics import compare_latency

    cmp = compare_latency([original, compressed], input_shape, rounds=rounds,
                          budget_s=budget_s, warmup=2)
    r = cmp.ratio(1, 0)
    lat = cmp.latencies if hasattr(cmp, "latencies") else None
    out = {"r_T": float(r.value), "spread": float(r.spread), "stable": bool(r.stable),
           "reason": r.reason, "rounds": int(r.rounds)}
    if lat is not None:
        out["ms"] = [float(x.median_ms) for x in lat]
    return out


def six_ratios(base: dict[str, Any], new: dict[str, Any], r_T: float | None,
               device: str = "device1") -> dict[str, float | None]:
    """The survey's six ratios (compressed / original; r_A = original / compressed top-1)."""
    def div(a, b):
        if a is None or b is None:
            return None
        if b == 0:
            return 1.0 if a == 0 else float("inf")
        return a / b

    return {"r_A": div(base["top1"], new["top1"]),
            "r_p": div(new["param_bytes"], base["param_bytes"]), "r_T": r_T,
            "r_c": div(new["macs"], base["macs"]),
            "r_E": div(new["energy_uj"][device], base["energy_uj"][device]),
            "r_D": div(new["index_bits"], base["index_bits"])}


def finetune(model, train_loader, steps: int, *, lr: float = 1e-4, hooks=()) -> None:
    """A short Adam fine-tune (``steps`` batches; none when 0), in place, eval mode after.
    The small default lr keeps a fresh Adam's first steps from shaking a trained model."""
    import math

    from slimkit.train import fit

    if steps > 0:
        epochs = max(1, math.ceil(steps / max(1, len(train_loader))))
        fit(model, train_loader, epochs=epochs, optimizer="adam", lr=lr, weight_decay=0.0,
            progress=False, seed=0, max_steps=steps, hooks=list(hooks), schedule="constant")
    model.eval()
