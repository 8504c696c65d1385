"""Deployment: real int8 inference and compact files.

- ``onnx_export``: ``export_onnx(model, input_shape, path)``, ``OnnxModel(path).run(x)``.
- ``onnx_int8``: ``export_int8_onnx`` (QDQ file with our scales and int8 weights),
  ``int8_session``, ``int8_report`` (which nodes onnxruntime runs in int8, float ones named),
  ``ort_quantize_static`` (onnxruntime's own static quantization, for comparison).
- ``torch_int8``: torch's x86 int8 backend via FX graph mode (``convert_torch_int8``,
  ``float_modules``, ``state_dict_bytes``).

- ``deep_compression``: ``save_compressed`` / ``load_compressed`` (pruned + k-means-shared
  models as a compact safetensors file, relative indices, optional Huffman coding);
  ``packing`` (sub-8-bit codes packed into bytes) and ``huffman`` (canonical Huffman).
- ``packed_file``: ``write_packed`` / ``read_packed`` / ``open_packed``, the sub-8-bit weight
  file ``slimkit quantize --bits B`` writes beside the int8 ONNX model (safetensors, checksum).

Submodules are imported on first use so that ``import slimkit.deploy`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExportError": "onnx_export",
    "OnnxModel": "onnx_export",
    "OrtModule": "onnx_export",
    "export_onnx": "onnx_export",
    "export_int8_onnx": "onnx_int8",
    "int8_session": "onnx_int8",
    "int8_report": "onnx_int8",
    "Int8Report": "onnx_int8",
    "ort_quantize_static": "onnx_int8",
    "int8_runtime": "onnx_int8",
    "quantized_bits": "onnx_int8",
    "read_choice": "onnx_int8",
    "detect_isa": "isa",
    "convert_torch_int8": "torch_int8",
    "float_modules": "torch_int8",
    "state_dict_bytes": "torch_int8",
    "save_compressed": "deep_compression",
    "load_compressed": "deep_compression",
    "read_packed": "packed_file",
    "open_packed": "packed_file",
    "write_packed": "packed_file",
    "pack_bits": "packing",
    "unpack_bits": "packing",
    "packed_nbytes": "packing",
    "huffman_encode": "huffman",
    "huffman_decode": "huffman",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
