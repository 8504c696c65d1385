"""Which int8 operand types an exported ONNX file uses, chosen so that onnxruntime computes
exactly what the simulated model computes on the target CPU (see :mod:`slimkit.deploy.isa`).

Schemes (activation x weight types the file asks onnxruntime's kernels for):

- ``u8s8``: uint8 activations x int8 weights. Fastest; exact with VNNI, and on AVX2 only
  when every weight code has ``|q| <= 64`` (e.g. a ``weight_bits=7`` model).
- ``u8u8``: uint8 activations x uint8 weights (``q + 128``, zero point 128: the same real
  values). Exact on every CPU (kernels widen to int16, ``vpmaddwd``); slower with VNNI.
- ``s8s8``: int8 activations as the simulated model has them; on x86 onnxruntime converts
  them to uint8 itself, except for tensors read by several nodes, which then stay float.
  Same exactness as ``u8s8``; kept for comparison.

The choice is written to the file's ``metadata_props`` (keys ``slimkit.int8.*``) and logged;
:func:`read_choice` reads it back.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from slimkit.deploy.isa import SATURATION_FREE_WEIGHT, detect_isa, resolve_isa
from slimkit.errors import UserError

__all__ = ["META_PREFIX", "SCHEMES", "Int8Choice", "choose_scheme", "is_exact", "read_choice", "write_choice"]

log = logging.getLogger(__name__)
SCHEMES = ("u8s8", "u8u8", "s8s8")
META_PREFIX = "slimkit.int8."


def is_exact(scheme: str, isa: str, weights_fit: bool) -> bool:
    """Whether onnxruntime's kernels for ``scheme`` on an ``isa``-class CPU compute the
    integer dot products without saturation (``weights_fit``: every ``|q| <= 64``)."""
    if scheme == "u8u8":
        return True
    return isa == "vnni" or weights_fit


@dataclass(frozen=True)
class Int8Choice:
    """The scheme of one exported file and why it was chosen."""

    scheme: str
    isa: str            # the CPU class the file is meant for
    detected_isa: str   # the CPU class of the machine that exported it
    exact: bool         # exact on ``isa`` (and on the exporting machine)
    weights_fit_7bit: bool
    reason: str

    def metadata(self) -> dict[str, str]:
        return {META_PREFIX + k: str(v) for k, v in asdict(self).items()}


def choose_scheme(isa: str, scheme: str | None, weights_fit: bool, u8u8_ok: bool = True) -> Int8Choice:
    """The fastest exact scheme for ``isa`` (``auto``, ``vnni``, ``avx2``, ``portable``), or
    the requested ``scheme``, with a warning when that one is inexact on the target CPU or
    on this machine. ``u8u8_ok``: every layer has one weight zero point (u8u8 needs it)."""
    detected = detect_isa()
    target = resolve_isa(isa)
    if scheme is None:
        if target == "vnni":
            scheme, reason = "u8s8", "VNNI accumulates u8 x s8 products in int32: exact and fastest"
        elif weights_fit:
            scheme, reason = "u8s8", (f"weights fit |q| <= {SATURATION_FREE_WEIGHT}: u8 x s8 pairs cannot "
                                      "saturate int16 without VNNI; exact and fastest")
        elif u8u8_ok:
            scheme, reason = "u8u8", ("full-range 8-bit weights would saturate int16 in u8 x s8 kernels "
                                      "without VNNI; u8 x u8 kernels widen to int16: exact, same values")
        else:
            scheme, reason = "u8s8", ("per-channel weight zero points differ, which u8u8 cannot hold; "
                                      "quantize with symmetric_weights=True or weight_bits=7 for an exact file")
    elif scheme not in SCHEMES:
        raise UserError(f"scheme={scheme!r} is not one of {', '.join(SCHEMES)}")
    elif scheme == "u8u8" and not u8u8_ok:
        raise UserError("scheme='u8u8' needs one weight zero point per layer, but per-channel zero points "
                        "differ; quantize with symmetric_weights=True")
    else:
        reason = "requested"
    exact_target = is_exact(scheme, target, weights_fit)
    exact_here = is_exact(scheme, detected, weights_fit)
    if not (exact_target and exact_here):
        where = [f"{target} CPUs (the target)"] * (not exact_target) + [f"this {detected} CPU"] * (not exact_here)
        fix = "use isa='auto' or scheme='u8u8'" if u8u8_ok else "quantize with symmetric_weights=True"
        msg = (f"int8 scheme {scheme} with full-range 8-bit weights is inexact on {' and '.join(where)}: "
               "onnxruntime's u8 x s8 kernels saturate int16 sums without VNNI, so results differ from "
               f"the simulated model; {fix}, or quantize with weight_bits=7")
        warnings.warn(msg, UserWarning, stacklevel=3)
        log.warning(msg)
        reason += "; inexact: " + " and ".join(where)
    choice = Int8Choice(scheme, target, detected, exact_target and exact_here, weights_fit, reason)
    log.info("int8 scheme %s for %s (detected %s): %s", scheme, target, detected, reason)
    return choice


def write_choice(model: onnx.ModelProto, choice: Int8Choice) -> None:
    """Record ``choice`` in ``model.metadata_props`` (other keys are kept)."""
    props = {p.key: p.value for p in model.metadata_props}
    props.update(choice.metadata())
    onnx.helper.set_model_props(model, props)


def read_choice(source: str | Path | onnx.ModelProto) -> dict[str, str]:
    """``{"scheme", "isa", "detected_isa", "exact", "weights_fit_7bit", "reason"}`` as
    recorded by the exporter; empty for a file it did not write."""
    model = source if isinstance(source, onnx.ModelProto) else onnx.load(str(source), load_external_data=False)
    return {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(META_PREFIX)}
