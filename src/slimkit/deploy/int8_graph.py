"""Graph rewrites behind :func:`slimkit.deploy.onnx_int8.export_int8_onnx` (ONNX QDQ files).

1. :func:`exact_pass`: when a conv/linear output reaches a layer's input quantizer through
   ops that commute with it (Relu, Clip, MaxPool, Flatten, Reshape), that quantizer is moved
   up to the output; a Relu/Clip whose clamp the quantizer already does is dropped. Exact for
   the quantizer's path; another reader of the same tensor (a residual Add) then sees the
   quantized value, as it would in any int8 runtime.
2. :func:`calibrated_pass`: outputs that still lack a quantizer (a residual branch entering an
   Add, an Add output) get one from the min/max observed on calibration batches. This adds a
   rounding the simulated model does not have, as any int8 runtime must.
3. :func:`activations_to_uint8`: int8 activations re-expressed as uint8 (same real values).
4. :func:`weights_to_uint8`: int8 weights re-expressed as uint8 (``q + 128``, zero point
   ``+ 128``: same real values), which selects onnxruntime's exact u8 x u8 kernels.

A tensor read by several nodes (a residual input) gets one Q -> DQ pair per reader, which
onnxruntime needs in order to fuse each of them. Integer arithmetic: Jacob et al., CVPR 2018.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from slimkit.deploy.onnx_export import session_options
from slimkit.errors import UserError

__all__ = [
    "activations_to_uint8",
    "as_batches",
    "calibrated_pass",
    "drop_unused_initializers",
    "exact_pass",
    "one_weight_zero_point",
    "weight_codes",
    "weights_to_uint8",
]

_PRODUCERS = {"Conv", "Gemm", "MatMul", "Add", "GlobalAveragePool", "AveragePool", "MaxPool"}
_CALIBRATED_PRODUCERS = {"Conv", "Gemm", "MatMul", "Add"}
_ACTIVATIONS = {"Relu", "Clip"}  # monotone clamps: commute with a quantizer up to its own clamp
_TRANSPARENT = _ACTIVATIONS | {"MaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity"}


class _Graph:
    """Producer/consumer maps over an ``onnx.GraphProto`` plus constant lookup."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.g = graph
        self.inits = {i.name: i for i in graph.initializer}
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in graph.output}

    def const(self, name: str) -> np.ndarray | None:
        while name not in self.inits:
            node = self.producer.get(name)
            if node is None or node.op_type != "Identity":
                if node is not None and node.op_type == "Constant":
                    return numpy_helper.to_array(node.attribute[0].t)
                return None
            name = node.input[0]
        return numpy_helper.to_array(self.inits[name])

    def qparams(self, q: onnx.NodeProto) -> tuple[float, int, int] | None:
        """``(scale, zero_point, qmin)`` of a per-tensor QuantizeLinear, else None."""
        scale = self.const(q.input[1])
        zp = self.const(q.input[2]) if len(q.input) > 2 and q.input[2] else np.array(0, np.uint8)
        if scale is None or zp is None or scale.size != 1:
            return None
        qmin = -128 if zp.dtype == np.int8 else 0
        return float(scale.reshape(())), int(zp.reshape(())), qmin


def _set_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    copies = []
    for n in nodes:
        c = onnx.NodeProto()
        c.CopyFrom(n)
        copies.append(c)
    graph.ClearField("node")
    graph.node.extend(copies)


def _insert_qdq(graph: onnx.GraphProto, tensor: str, scale: float, zp: int, signed: bool, tag: str) -> None:
    """Put ``QuantizeLinear -> DequantizeLinear`` on ``tensor``; its consumers read the result."""
    s_name, z_name = f"{tag}_scale", f"{tag}_zp"
    graph.initializer.append(numpy_helper.from_array(np.array(scale, np.float32), s_name))
    graph.initializer.append(numpy_helper.from_array(np.array(zp, np.int8 if signed else np.uint8), z_name))
    new: list[onnx.NodeProto] = []
    nodes: list[onnx.NodeProto] = []
    for n in graph.node:
        if tensor in n.input:  # a dedicated Q -> DQ pair per reader: onnxruntime fuses (and
            j = len(new) // 2  # converts s8 -> u8) only unshared pairs
            q_out, dq_out = f"{tag}_q{j}", f"{tag}_dq{j}"
            new.append(helper.make_node("QuantizeLinear", [tensor, s_name, z_name], [q_out], name=f"{tag}/Q{j}"))
            new.append(helper.make_node("DequantizeLinear", [q_out, s_name, z_name], [dq_out], name=f"{tag}/DQ{j}"))
            for k, name in enumerate(n.input):
                if name == tensor:
                    n.input[k] = dq_out
        nodes.append(n)
    at = next(i for i, n in enumerate(nodes) if tensor in n.output) + 1
    nodes[at:at] = new
    _set_nodes(graph, nodes)


def _drop_if_redundant(graph: onnx.GraphProto, act_out: str, scale: float, zp: int, qmin: int) -> None:
    """Remove a Relu/Clip (by output name) whose clamp the following quantizer already does:
    the quantizer's real range ``scale * ([qmin, qmax] - zp)`` lies inside the clamp's range."""
    g = _Graph(graph)
    act = g.producer[act_out]
    lo, hi = 0.0, np.inf
    if act.op_type == "Clip":
        lo_c = g.const(act.input[1]) if len(act.input) > 1 and act.input[1] else None
        hi_c = g.const(act.input[2]) if len(act.input) > 2 and act.input[2] else None
        lo = -np.inf if lo_c is None else float(lo_c)
        hi = np.inf if hi_c is None else float(hi_c)
    eps = 1e-6 * max(scale, 1.0)
    if scale * (qmin - zp) < lo - eps or scale * (qmin + 255 - zp) > hi + eps:
        return
    src = act.input[0]
    nodes = []
    for n in graph.node:
        if n.output and n.output[0] == act_out:
            continue
        for k, name in enumerate(n.input):
            if name == act_out:
                n.input[k] = src
        nodes.append(n)
    _set_nodes(graph, nodes)


def _chain(g: _Graph, tensor: str) -> tuple[list[str], list[onnx.NodeProto]]:
    """Follow single-consumer commuting ops from ``tensor``: ``(relu outputs on the way,
    Q nodes at the end)``."""
    relus: list[str] = []
    cur = tensor
    while cur not in g.outputs:
        cons = g.consumers.get(cur, [])
        qs = [c for c in cons if c.op_type == "QuantizeLinear"]
        if qs:
            return relus, qs
        if len(cons) != 1 or cons[0].op_type not in _TRANSPARENT:
            break
        if cons[0].op_type in _ACTIVATIONS:
            relus.append(cons[0].output[0])
        cur = cons[0].output[0]
    return relus, []


def exact_pass(model: onnx.ModelProto) -> None:
    graph = model.graph
    outs = [n.output[0] for n in graph.node if n.op_type in _PRODUCERS]
    for idx, out in enumerate(outs):
        g = _Graph(graph)
        cons = g.consumers.get(out, [])
        direct = [c for c in cons if c.op_type == "QuantizeLinear"]
        if out in g.outputs or (direct and len(direct) == len(cons)):
            continue
        # a tensor read by a quantizer and by something else (a residual Add): quantize it
        # once for all readers, as the int8 kernels need a single quantized output
        relus, qs = ([], direct) if direct else _chain(g, out)
        params = {g.qparams(q) for q in qs}
        if not qs or len(params) != 1 or None in params:
            continue
        scale, zp, qmin = params.pop()
        # direct readers are replaced by the new pair; after commuting ops (MaxPool...) the
        # downstream Q stays, as onnxruntime wants DQ -> MaxPool -> Q around int8 pooling
        downstream = [q.output[0] for q in direct]
        _insert_qdq(graph, out, scale, zp, qmin < 0, f"{out}/requant{idx}")
        for r in relus:
            _drop_if_redundant(graph, r, scale, zp, qmin)
        for q_out in downstream:  # its input is on the grid now: Q -> DQ is the identity
            _bypass_qdq(graph, q_out)


def _bypass_qdq(graph: onnx.GraphProto, q_out: str) -> None:
    """Remove a ``QuantizeLinear`` (by output name) and its ``DequantizeLinear`` readers; their
    readers take the Q's input instead (exact when that input is already on its grid)."""
    g = _Graph(graph)
    q = g.producer.get(q_out)
    readers = g.consumers.get(q_out, [])
    if q is None or not readers or any(r.op_type != "DequantizeLinear" for r in readers):
        return
    src = q.input[0]
    dq_outs = {r.output[0] for r in readers}
    if dq_outs & g.outputs:
        return
    drop = {id(q)} | {id(r) for r in readers}
    nodes = []
    for n in graph.node:
        if id(n) in drop:
            continue
        for k, name in enumerate(n.input):
            if name in dq_outs:
                n.input[k] = src
        nodes.append(n)
    _set_nodes(graph, nodes)


def activations_to_uint8(model: onnx.ModelProto) -> None:
    """Re-express int8 activations as uint8 (``q + 128`` with ``zp + 128``: the same real
    values). x86 int8 kernels take u8 activations x s8 weights; onnxruntime would otherwise
    convert each Q/DQ pair itself, which it skips for a quantizer with several readers."""
    g = _Graph(model.graph)
    for k, q in enumerate(n for n in model.graph.node if n.op_type == "QuantizeLinear"):
        zp = g.const(q.input[2]) if len(q.input) > 2 and q.input[2] else None
        if zp is None or zp.dtype != np.int8:
            continue
        name = f"{q.output[0]}/zp_u8_{k}"
        model.graph.initializer.append(numpy_helper.from_array((zp.astype(np.int16) + 128).astype(np.uint8), name))
        q.input[2] = name
        for r in g.consumers.get(q.output[0], []):
            if r.op_type == "DequantizeLinear":
                r.input[2] = name


def calibrated_pass(model: onnx.ModelProto, batches: list[np.ndarray]) -> None:
    g = _Graph(model.graph)
    todo: dict[str, tuple[str, str | None]] = {}  # producer output -> (observed tensor, relu output)
    for node in model.graph.node:
        if node.op_type not in _CALIBRATED_PRODUCERS or node.output[0] in g.outputs:
            continue
        out = node.output[0]
        cons = g.consumers.get(out, [])
        if not cons or any(c.op_type == "QuantizeLinear" for c in cons):
            continue
        relu = cons[0].output[0] if len(cons) == 1 and cons[0].op_type in _ACTIVATIONS else None
        if relu is not None and relu in g.outputs:
            continue
        todo[out] = (relu if relu is not None else out, relu)
    if not todo:
        return
    ranges = _observe(model, [t for t, _ in todo.values()], batches)
    for k, (out, (observed, relu)) in enumerate(todo.items()):
        lo, hi = ranges[observed]
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = max((hi - lo) / 255.0, 1e-8)
        zp = int(np.clip(round(-128 - lo / scale), -128, 127))
        _insert_qdq(model.graph, out, scale, zp, True, f"{out}/calib{k}")
        if relu is not None:
            _drop_if_redundant(model.graph, relu, scale, zp, -128)


def _observe(model: onnx.ModelProto, names: list[str], batches: list[np.ndarray]) -> dict[str, tuple[float, float]]:
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for n in names:
        probe.graph.output.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
    sess = ort.InferenceSession(probe.SerializeToString(), session_options(1, "disable"),
                                providers=["CPUExecutionProvider"])
    iname = sess.get_inputs()[0].name
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    for x in batches:
        outs = sess.run(names, {iname: x})
        for n, v in zip(names, outs):
            lo[n], hi[n] = min(lo[n], float(v.min())), max(hi[n], float(v.max()))
    return {n: (lo[n], hi[n]) for n in names}


def as_batches(calib: Iterable, limit: int = 64) -> list[np.ndarray]:
    out = []
    for item in calib:
        x = item[0] if isinstance(item, (tuple, list)) else item
        x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        out.append(np.ascontiguousarray(x, dtype=np.float32))
        if len(out) >= limit:
            break
    if not out:
        raise UserError("calib yielded no batches")
    return out




def _weight_dqs(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """DequantizeLinear nodes that read an int8 initializer of rank >= 2 (conv/linear weights)."""
    inits = {i.name: i for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
            and inits[n.input[0]].data_type == TensorProto.INT8 and len(inits[n.input[0]].dims) >= 2]


def weight_codes(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializer name -> int8 weight codes of every quantized conv/linear weight."""
    inits = {i.name: i for i in model.graph.initializer}
    return {n.input[0]: numpy_helper.to_array(inits[n.input[0]]) for n in _weight_dqs(model)}


def _weight_zero_point(g: _Graph, dq: onnx.NodeProto) -> np.ndarray | None:
    return g.const(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else np.zeros((), np.int8)


def one_weight_zero_point(model: onnx.ModelProto) -> bool:
    """True when every quantized weight has a single zero point (per tensor, or per channel
    but all equal, as symmetric weights have), which :func:`weights_to_uint8` needs."""
    g = _Graph(model.graph)
    zps = [_weight_zero_point(g, dq) for dq in _weight_dqs(model)]
    return all(z is not None and np.unique(z).size <= 1 for z in zps)


def weights_to_uint8(model: onnx.ModelProto) -> None:
    """Re-express int8 weights as uint8: codes ``q + 128`` with zero points ``zp + 128`` (the
    same real values), so onnxruntime runs its u8 x u8 kernels, which widen to int16 and never
    saturate. Its QLinearConv needs one zero point per layer (symmetric weights: all 128)."""
    g = _Graph(model.graph)
    for k, dq in enumerate(_weight_dqs(model)):
        codes = numpy_helper.to_array(g.inits[dq.input[0]])
        zp = _weight_zero_point(g, dq)
        if zp is None or np.unique(zp).size > 1:
            raise UserError(f"weight {dq.input[0]!r} has per-channel zero points that differ; the u8u8 "
                            "scheme needs one per layer (quantize with symmetric_weights=True)")
        names = (f"{dq.input[0]}/u8_{k}", f"{dq.input[0]}/u8_zp_{k}")
        for arr, name in ((codes, names[0]), (zp, names[1])):
            shifted = (arr.astype(np.int16) + 128).astype(np.uint8)
            model.graph.initializer.append(numpy_helper.from_array(shifted, name))
        dq.input[0] = names[0]
        if len(dq.input) > 2:
            dq.input[2] = names[1]
        else:
            dq.input.append(names[1])
    drop_unused_initializers(model)


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    """Remove initializers no node reads (left behind by the rewrites)."""
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    if len(keep) != len(model.graph.initializer):
        copies = []
        for i in keep:
            c = onnx.TensorProto()
            c.CopyFrom(i)
            copies.append(c)
        model.graph.ClearField("initializer")
        model.graph.initializer.extend(copies)
