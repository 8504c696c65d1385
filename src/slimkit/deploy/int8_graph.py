"""Graph rewrites behind :func:`slimkit.deploy.onnx_int8.export_int8_onnx` (ONNX QDQ files).

1. :func:`quantize_activations`: the exported per-layer ``QuantizeLinear -> DequantizeLinear``
   pairs are stripped and re-planned so that every quantized tensor has ONE quantizer shared by
   all its readers, each reader reading its own ``DequantizeLinear`` (onnxruntime fuses a conv
   into QLinearConv only when a quantizer is its sole reader). Exact moves: a layer's input grid
   moves up through ops that commute with it (Relu, Clip, MaxPool, Flatten, Reshape, Transpose)
   to the producer's output, a Relu/Clip whose clamp the grid does is dropped, pass-through
   ops keep their input's grid; another reader of that tensor (a residual Add) then sees the
   quantized value, as in any int8 runtime. With calibration batches, every float input and
   output of an op onnxruntime runs in int8 (``INT8_OPS``) gets a min/max grid, which adds a
   rounding the simulated model does not have, as any int8 runtime must. A Gemm producing the
   network output keeps a float result (int32 bias: QGemm with float output).
2. :func:`activations_to_uint8`: int8 activations re-expressed as uint8 (same real values).
3. :func:`weights_to_uint8`: int8 weights re-expressed as uint8 (``q + 128``, zero point
   ``+ 128``: same real values), which selects onnxruntime's exact u8 x u8 kernels.

Only float tensors are quantized (by shape inference): integer shape arithmetic (the split
sizes of ``torch.chunk``) stays integer. Integer arithmetic: Jacob et al., CVPR 2018.
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
    "drop_unused_initializers",
    "exact_pass",
    "one_weight_zero_point",
    "quantize_activations",
    "weight_codes",
    "weights_to_uint8",
]

_MACS = {"Conv", "Gemm", "MatMul"}
# ops onnxruntime runs as integer kernels when every float input is dequantized and the
# output quantized (its QDQ node units): QLinearConv/QGemm/QLinearMatMul, QLinearAdd/Mul,
# QLinearConcat, QLinearAveragePool/GlobalAveragePool, QLinearSigmoid
INT8_OPS = _MACS | {"Add", "Mul", "Concat", "AveragePool", "GlobalAveragePool", "Sigmoid"}
_ACTIVATIONS = {"Relu", "Clip"}  # monotone clamps: commute with a quantizer up to its own clamp
# ops that move values without computing new ones: their output stays on the input's grid, so
# it gets the input's quantizer (exact) and onnxruntime runs them on uint8
PASS_THROUGH = {"MaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Transpose", "Resize",
                "Slice", "Split"}
_UP = _ACTIVATIONS | {"MaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Transpose"}


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

    def is_const(self, name: str) -> bool:
        node = self.producer.get(name)
        return name in self.inits or (node is not None and (node.op_type == "Constant" or (
            node.op_type in ("Identity", "DequantizeLinear") and self.is_const(node.input[0]))))

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


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of float32 tensors (graph inputs, intermediate values, outputs) by shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    return {v.name for v in list(g.input) + list(g.value_info) + list(g.output)
            if v.type.tensor_type.elem_type == TensorProto.FLOAT}


def _redundant(act: onnx.NodeProto, g: _Graph, scale: float, zp: int, qmin: int) -> bool:
    """A Relu/Clip whose clamp the following quantizer already does: the quantizer's real range
    ``scale * ([qmin, qmax] - zp)`` lies inside the clamp's range."""
    lo, hi = 0.0, np.inf
    if act.op_type == "Clip":
        lo_c = g.const(act.input[1]) if len(act.input) > 1 and act.input[1] else None
        hi_c = g.const(act.input[2]) if len(act.input) > 2 and act.input[2] else None
        lo = -np.inf if lo_c is None else float(lo_c)
        hi = np.inf if hi_c is None else float(hi_c)
    eps = 1e-6 * max(scale, 1.0)
    return not (scale * (qmin - zp) < lo - eps or scale * (qmin + 255 - zp) > hi + eps)


def _strip_activation_qdq(model: onnx.ModelProto) -> dict[str, list[tuple[str, int, tuple]]]:
    """Remove the exported ``QuantizeLinear -> DequantizeLinear`` pairs on activations (the layers'
    input quantizers); readers read the float tensor again. Returns tensor -> [(reader node name,
    input index, (scale, zp, qmin))], the grid each layer asked for."""
    g = _Graph(model.graph)
    requests: dict[str, list[tuple[str, int, tuple]]] = {}
    drop: set[int] = set()
    for q in model.graph.node:
        if q.op_type != "QuantizeLinear" or g.is_const(q.input[0]):
            continue
        readers = g.consumers.get(q.output[0], [])
        params = g.qparams(q)
        if params is None or not readers or any(r.op_type != "DequantizeLinear" for r in readers) \
                or q.output[0] in g.outputs or any(r.output[0] in g.outputs for r in readers):
            continue
        for dq in readers:
            for c in g.consumers.get(dq.output[0], []):
                for k, name in enumerate(c.input):
                    if name == dq.output[0]:
                        c.input[k] = q.input[0]
                        requests.setdefault(q.input[0], []).append((c.name, k, params))
            drop.add(id(dq))
        drop.add(id(q))
    _set_nodes(model.graph, [n for n in model.graph.node if id(n) not in drop])
    return requests


def _plan(model: onnx.ModelProto, requests: dict, floats: set[str], calibrate: bool):
    """tensor -> how it is quantized: ``("exact", params)``, ``("calib", observed tensor)`` or
    ``("same", tensor)`` (the grid of another tensor); plus per-reader requantizations and
    the Relu/Clip nodes a quantizer may absorb."""
    g = _Graph(model.graph)
    plan: dict[str, tuple] = {}
    requant: dict[tuple[str, int], tuple] = {}
    absorb: list[onnx.NodeProto] = []
    for tensor, reqs in requests.items():  # 1. the layers' own grids, moved up where exact
        params = reqs[0][2]
        if tensor in plan:
            params = plan[tensor][1] if plan[tensor][0] == "exact" else params
        for name, k, p in reqs:
            if p != params:
                requant[(name, k)] = p
        if tensor in plan:
            continue
        chain, cur = [], tensor
        while True:
            p = g.producer.get(cur)
            if p is None or p.op_type not in _UP or cur in g.outputs or p.input[0] in plan \
                    or len(g.consumers.get(p.input[0], [])) != 1 or p.input[0] not in floats:
                break
            chain.append(p)
            cur = p.input[0]
        plan[cur] = ("exact", params)
        for p in reversed(chain):
            plan[p.output[0]] = ("same", p.input[0])
            if p.op_type in _ACTIVATIONS:
                absorb.append(p)
    for node in model.graph.node:  # 2. pass-through ops keep the grid; 3. int8 ops get calibrated grids
        outs = [o for o in node.output if o in floats]
        if node.op_type in PASS_THROUGH and node.input and node.input[0] in plan:
            for o in outs:
                plan.setdefault(o, ("same", node.input[0]))
        elif calibrate and _int8_capable(node, g, floats):
            for t in node.input[:1] if node.op_type in _MACS else node.input:
                if t in floats and not g.is_const(t):
                    plan.setdefault(t, ("calib", t))
            for o in outs:
                # the network output is not rounded to 8 bits: a Gemm / MatMul producing it keeps
                # a float result (QGemm, see _int32_bias; MatMulIntegerToFloat), a pool or add
                # producing it runs in float; only a conv must (QLinearConv has no float output)
                if node.op_type == "Conv" or not _feeds_output_only(g, o):
                    plan.setdefault(o, ("calib", o))
    for act in model.graph.node:  # a calibrated conv output read by one Relu: observe after the Relu
        src, out = act.input[0] if act.input else "", act.output[0]
        if act.op_type in _ACTIVATIONS and plan.get(src, ("",))[0] == "calib" and \
                len(g.consumers.get(src, [])) == 1 and out not in g.outputs:
            plan[src] = ("calib", out)
            plan[out] = ("same", src)
            absorb.append(act)
    return plan, requant, absorb


def _feeds_output_only(g: _Graph, tensor: str) -> bool:
    """Whether ``tensor`` reaches only a graph output, through single-reader pass-through ops."""
    while tensor not in g.outputs:
        cons = g.consumers.get(tensor, [])
        if len(cons) != 1 or cons[0].op_type not in PASS_THROUGH or len(cons[0].output) != 1:
            return False
        tensor = cons[0].output[0]
    return not g.consumers.get(tensor)


def _int8_capable(node: onnx.NodeProto, g: _Graph, floats: set[str]) -> bool:
    """Whether onnxruntime has an integer kernel for ``node`` once its inputs are quantized:
    conv/linear with int8 weights; Add/Mul of two activations (not a constant operand)."""
    if node.op_type not in INT8_OPS:
        return False
    if node.op_type in _MACS:
        w = g.producer.get(node.input[1]) if len(node.input) > 1 else None
        return w is not None and w.op_type == "DequantizeLinear" and g.is_const(w.input[0])
    if node.op_type in ("Add", "Mul"):
        return all(t in floats and not g.is_const(t) for t in node.input)
    return True


def quantize_activations(model: onnx.ModelProto, batches: list[np.ndarray] | None = None) -> None:
    """Give every quantized tensor ONE ``QuantizeLinear`` shared by all its readers, each reader
    reading its own ``DequantizeLinear`` (what onnxruntime's QDQ fusion needs).

    Without ``batches`` only exact moves happen: a layer's input quantizer moves up through ops
    that commute with it (Relu, Clip, MaxPool, Flatten, Reshape) to the producer's output, a
    Relu/Clip whose clamp the quantizer does is dropped, and pass-through ops keep the grid.
    With ``batches`` every input and output of an op onnxruntime runs in int8 (see
    ``INT8_OPS``) that still lacks a quantizer gets one from the min/max observed on the
    batches (residual adds, concat, pooling, sigmoid, the last layer's output). Only float
    tensors are quantized (shape arithmetic stays integer)."""
    raw = onnx.ModelProto()
    raw.CopyFrom(model)
    for k, n in enumerate(model.graph.node):
        if not n.name:
            n.name = f"node{k}_{n.op_type}"
    floats = _float_tensors(model)
    requests = _strip_activation_qdq(model)
    plan, requant, absorb = _plan(model, requests, floats, batches is not None)
    observed = sorted({v[1] for v in plan.values() if v[0] == "calib"})
    ranges = _observe(raw, observed, batches) if observed else {}
    params: dict[str, tuple] = {}
    for t, (kind, arg) in plan.items():
        if kind == "exact":
            params[t] = arg
        elif kind == "calib":
            lo, hi = ranges[arg]
            lo, hi = min(lo, 0.0), max(hi, 0.0)
            scale = max((hi - lo) / 255.0, 1e-8)
            params[t] = (scale, int(np.clip(round(-128 - lo / scale), -128, 127)), -128)
    for t, (kind, arg) in plan.items():  # plan order is topological for "same"
        if kind == "same":
            while t not in params and plan[arg][0] == "same" and arg not in params:
                arg = plan[arg][1]
            params[t] = params[arg]
    _absorb_activations(model, absorb, params)
    _materialize(model, params, requant)
    for node in list(model.graph.node):
        if node.op_type == "Gemm" and node.output[0] not in params:
            _int32_bias(model, node)


def _int32_bias(model: onnx.ModelProto, gemm: onnx.NodeProto) -> None:
    """Give a Gemm with int8 operands and a float output (the network output) its bias as int32
    codes on the product grid ``scale_x * scale_w`` behind a DequantizeLinear: onnxruntime then
    fuses it into QGemm with a float result (a float bias blocks that fusion, and quantizing the
    output instead would round the logits to 8 bits). The rounding is the one integer kernels
    do to a bias anyway (< half a product step)."""
    g = _Graph(model.graph)
    attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
    if len(gemm.input) < 3 or not gemm.input[2] or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        return
    x, w, bias = (g.producer.get(t) for t in gemm.input[:2]), None, g.const(gemm.input[2])
    x, w = x
    if bias is None or x is None or w is None or "DequantizeLinear" != x.op_type or w.op_type != x.op_type:
        return
    sx, sw = g.const(x.input[1]), g.const(w.input[1])
    if sx is None or sw is None or sx.size != 1:
        return
    scale = (sx.reshape(()).astype(np.float64) * sw.reshape(-1).astype(np.float64)).astype(np.float32)
    scale = np.broadcast_to(scale, bias.shape).copy()
    codes = np.round(bias.astype(np.float64) / scale).astype(np.int32)
    tag = f"{gemm.input[2]}/int32"
    model.graph.initializer.extend([numpy_helper.from_array(codes, tag),
                                    numpy_helper.from_array(scale, f"{tag}_scale"),
                                    numpy_helper.from_array(np.zeros(bias.shape, np.int32), f"{tag}_zp")])
    dq = helper.make_node("DequantizeLinear", [tag, f"{tag}_scale", f"{tag}_zp"], [f"{tag}_dq"],
                          name=f"{gemm.name}/bias_DQ", axis=0)
    gemm.input[2] = f"{tag}_dq"
    nodes = []
    for n in model.graph.node:
        if n is gemm:
            nodes.append(dq)
        nodes.append(n)
    _set_nodes(model.graph, nodes)
    drop_unused_initializers(model)


def _absorb_activations(model: onnx.ModelProto, acts: list[onnx.NodeProto], params: dict) -> None:
    """Drop each Relu/Clip whose input and output share a grid that already clamps as it does."""
    g = _Graph(model.graph)
    drop = set()
    rename: dict[str, str] = {}
    for act in acts:
        src, out = act.input[0], act.output[0]
        p = params.get(out)
        if p is None or params.get(src) != p or out in g.outputs or not _redundant(act, g, *p):
            continue
        drop.add(act.name)
        rename[out] = src
        params.pop(out)
    nodes = []
    for n in model.graph.node:
        if n.name in drop:
            continue
        for k, name in enumerate(n.input):
            while name in rename:
                name = rename[name]
            n.input[k] = name
        nodes.append(n)
    _set_nodes(model.graph, nodes)


def _qdq_nodes(graph: onnx.GraphProto, tensor: str, p: tuple, tag: str) -> tuple[onnx.NodeProto, str, str]:
    scale, zp, qmin = p
    s_name, z_name = f"{tag}_scale", f"{tag}_zp"
    graph.initializer.append(numpy_helper.from_array(np.array(scale, np.float32), s_name))
    graph.initializer.append(numpy_helper.from_array(np.array(zp, np.int8 if qmin < 0 else np.uint8), z_name))
    q = helper.make_node("QuantizeLinear", [tensor, s_name, z_name], [f"{tag}_q"], name=f"{tag}/Q")
    return q, s_name, z_name


def _materialize(model: onnx.ModelProto, params: dict[str, tuple], requant: dict) -> None:
    """Write the plan: one Q per tensor, one DQ per reader (and Q -> DQ again for a reader
    that asked for another grid); a quantized graph output keeps its name."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    for k, n in enumerate(graph.node):  # a quantized graph output is produced under a new name
        for j, o in enumerate(n.output):
            if o in params and o in outputs:
                n.output[j] = f"{o}/float"
                params[f"{o}/float"] = params.pop(o)
                for m in graph.node:
                    for i, name in enumerate(m.input):
                        if name == o:
                            m.input[i] = f"{o}/float"
    new_nodes: list[onnx.NodeProto] = []
    emitted: dict[str, list[onnx.NodeProto]] = {}
    for idx, t in enumerate(params):
        tag = f"{t}/quant{idx}"
        q, s, z = _qdq_nodes(graph, t, params[t], tag)
        emitted[t] = [q]
        readers = [(n, k) for n in graph.node for k, name in enumerate(n.input) if name == t]
        for j, (n, k) in enumerate(readers):
            dq_out = f"{tag}_dq{j}"
            emitted[t].append(helper.make_node("DequantizeLinear", [q.output[0], s, z], [dq_out], name=f"{tag}/DQ{j}"))
            other = requant.get((n.name, k))
            if other is not None and other != params[t]:
                q2, s2, z2 = _qdq_nodes(graph, dq_out, other, f"{tag}/requant{j}")
                emitted[t] += [q2, helper.make_node("DequantizeLinear", [q2.output[0], s2, z2], [f"{dq_out}/rq"],
                                                    name=f"{tag}/requant{j}/DQ")]
                dq_out = f"{dq_out}/rq"
            n.input[k] = dq_out
        if t.endswith("/float") and t[:-len("/float")] in outputs:
            emitted[t].append(helper.make_node("DequantizeLinear", [q.output[0], s, z], [t[:-len("/float")]],
                                               name=f"{tag}/DQout"))
    for i in graph.input:
        new_nodes += emitted.pop(i.name, [])
    for n in graph.node:
        new_nodes.append(n)
        for o in n.output:
            new_nodes += emitted.pop(o, [])
    _set_nodes(graph, new_nodes)


def exact_pass(model: onnx.ModelProto) -> None:
    """:func:`quantize_activations` without calibration data (exact moves only)."""
    quantize_activations(model, None)


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


def _observe(model: onnx.ModelProto, names: list[str], batches: list[np.ndarray]) -> dict[str, tuple[float, float]]:
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for n in names:
        if n not in have:
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
