"""torch's own x86 int8 backend (FBGEMM/oneDNN kernels) through FX graph-mode quantization.

``convert_torch_int8(model, calib)`` runs ``prepare_fx`` with the ``"x86"`` qconfig mapping, feeds
the calibration batches through the observers, and ``convert_fx`` turns the network into
real int8 modules (``torch.ao.nn.quantized.Conv2d`` etc.). Static post-training
quantization as in Krishnamoorthi, "Quantizing deep convolutional networks for efficient
inference: A whitepaper", 2018 (per-channel int8 weights, per-tensor uint8 activations).

``torch.ao.quantization`` is deprecated in favour of ``torchao`` in recent torch releases but
still ships (torch 2.13); its ``DeprecationWarning``/``FutureWarning`` is silenced here,
and the function raises a clear error where the API has been removed.

>>> q = convert_torch_int8(float_model, [torch.randn(8, 3, 32, 32)], input_shape=(3, 32, 32))  # doctest: +SKIP
>>> float_modules(q)                                                                     # doctest: +SKIP
[]
"""

from __future__ import annotations

import copy
import io
import warnings
from typing import Iterable, Sequence

import torch
from torch import nn

from slimkit.errors import UserError

__all__ = ["convert_torch_int8", "float_modules", "state_dict_bytes"]

_FLOAT_COMPUTE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm2d)
_NEUTRAL_MODULES = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout)


def _ao():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
        except ImportError as exc:  # removed in a future torch: use torchao instead
            raise UserError(
                f"torch {torch.__version__} has no torch.ao.quantization FX API ({exc}); "
                "install torch<=2.13 or use the onnxruntime int8 path"
            ) from exc
    return get_default_qconfig_mapping, prepare_fx, convert_fx


def convert_torch_int8(
    model: nn.Module,
    calib: Iterable,
    input_shape: Sequence[int],
    backend: str = "x86",
    max_batches: int = 16,
) -> nn.Module:
    """A real int8 copy of float ``model`` for torch's ``backend`` (``"x86"`` or ``"fbgemm"``,
    ``"qnnpack"``), calibrated on ``calib`` (batches or ``(x, y)`` pairs). ``model`` is
    untouched; it must be ``torch.fx``-traceable."""
    allowed = ("x86", "fbgemm", "qnnpack", "onednn")
    if backend not in allowed:
        raise UserError(f"unknown backend {backend!r}; allowed: {', '.join(allowed)}")
    if backend not in torch.backends.quantized.supported_engines:
        raise UserError(f"quantized engine {backend!r} is not built into this torch; "
                        f"supported: {torch.backends.quantized.supported_engines}")
    get_mapping, prepare_fx, convert_fx = _ao()
    torch.backends.quantized.engine = backend
    example = (torch.randn(1, *[int(d) for d in input_shape]),)
    m = copy.deepcopy(model).eval()
    seen = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(m, get_mapping(backend), example_inputs=example)
        with torch.no_grad():
            for item in calib:
                x = item[0] if isinstance(item, (tuple, list)) else item
                prepared(torch.as_tensor(x, dtype=torch.float32))
                seen += 1
                if seen >= max_batches:
                    break
        if seen == 0:
            raise UserError("calib yielded no batches")
        return convert_fx(prepared)


def float_modules(qmodel: nn.Module) -> list[str]:
    """Names of compute modules (conv/linear/BN) of a converted model still running in float,
    plus ``call_function`` nodes on float tensors between a ``dequantize`` and a
    ``quantize_per_tensor`` (e.g. a custom activation)."""
    names = [
        f"{n} ({type(m).__name__})" for n, m in qmodel.named_modules()
        if type(m) in _FLOAT_COMPUTE
    ]
    graph = getattr(qmodel, "graph", None)
    if graph is None:
        return names
    floats: set[str] = set()
    for node in graph.nodes:  # forward propagation of "this value is a float tensor"
        args = [a for a in node.all_input_nodes]
        if node.op == "call_method" and node.target == "dequantize":
            floats.add(node.name)
        elif node.op == "placeholder":
            floats.add(node.name)
        elif node.op == "call_function" and getattr(node.target, "__name__", "") == "quantize_per_tensor":
            continue
        elif any(a.name in floats for a in args):
            floats.add(node.name)
            if node.op in ("call_function", "call_method") and node.target not in (
                torch.flatten, "flatten", "view", "reshape", "size", getattr,
            ) and getattr(node.target, "__name__", str(node.target)) not in ("getattr", "flatten"):
                names.append(f"{node.name} ({getattr(node.target, '__name__', node.target)})")
            elif node.op == "call_module":
                mod = qmodel.get_submodule(str(node.target))
                quantized = type(mod).__module__.startswith("torch.ao")
                if not isinstance(mod, _FLOAT_COMPUTE + _NEUTRAL_MODULES) and not quantized:
                    names.append(f"{node.target} ({type(mod).__name__})")
    return names


def state_dict_bytes(model: nn.Module) -> int:
    """On-disk size of ``torch.save(model.state_dict())`` (packed int8 weights for a converted
    model), measured by serializing to memory."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes

