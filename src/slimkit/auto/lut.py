"""Per-layer latency lookup tables measured on the target (NetAdapt, Yang et al. ECCV 2018).

NetAdapt and AMC (He et al. ECCV 2018) need the latency of thousands of candidate networks;
measuring each is too slow, so latency is predicted as the sum of per-layer latencies looked
up in a table measured once on the device. A *unit* is what the runtime executes as one
kernel: a conv or linear together with the BatchNorm and activation that follow it alone
(onnxruntime fuses them; in torch eager they are timed together too), or any other single
op (add, pooling, concat, flatten ...). Units are keyed by their signature (module
configuration + input shapes + batch + backend), so a pruned network reuses every entry
whose layer kept its shape and measures only the new ones.

Tables are cached on disk per host (CPU model, library versions, threads):
``$SLIMKIT_CACHE/lut/<host>.json`` (default ``~/.cache/slimkit``), written atomically.

>>> table = LatencyTable.for_host(backend="onnxruntime", batch_size=1)   # doctest: +SKIP
>>> table.predict(model, (3, 32, 32)).total_ms                          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from slimkit.errors import UserError

__all__ = ["BACKENDS", "LatencyTable", "Prediction", "Unit", "host_fingerprint", "units"]

BACKENDS = ("torch", "onnxruntime")
_HEADS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_ACTS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.LeakyReLU, nn.Sigmoid)
_ACT_FUNCS = {torch.relu, torch.nn.functional.relu, torch.nn.functional.relu6,
              torch.nn.functional.hardswish, torch.sigmoid}


# ----------------------------------------------------------------------------- units
@dataclass
class Unit:
    """One kernel's worth of the network: fx nodes run together, their external inputs."""

    nodes: list[fx.Node]
    inputs: list[fx.Node]
    key: str = ""

    @property
    def name(self) -> str:
        return self.nodes[0].name


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _single_user(node: fx.Node) -> bool:
    return len(node.users) == 1


def _is_act(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(mods[node.target], _ACTS)
    if node.op in ("call_function", "call_method"):
        return node.target in _ACT_FUNCS or node.target in ("relu", "relu_")
    return False


def _describe(node: fx.Node, mods: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return repr(mods[node.target]).replace("\n", "")
    target = getattr(node.target, "__name__", str(node.target))
    consts = [repr(a) for a in node.args if not isinstance(a, fx.Node)]
    consts += [f"{k}={v!r}" for k, v in node.kwargs.items() if not isinstance(v, fx.Node)]
    return f"{node.op}:{target}({', '.join(consts)})"


def units(model: nn.Module, input_shape: Sequence[int]) -> tuple[fx.GraphModule, list[Unit]]:
    """Trace ``model`` (torch.fx), propagate shapes for a batch-1 input, group nodes into units.

    Raises ``UserError`` when the model cannot be traced.
    """
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types for untraceable code
        raise UserError(f"latency table: {type(model).__name__} cannot be traced by torch.fx "
                        f"({type(exc).__name__}: {exc})") from None
    ShapeProp(gm).propagate(torch.zeros(1, *input_shape))
    mods = dict(gm.named_modules())
    out: list[Unit] = []
    taken: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node in taken or node.op in ("placeholder", "output", "get_attr"):
            continue
        chain = [node]
        if node.op == "call_module" and isinstance(mods[node.target], _HEADS):
            tail = node
            for want in ("norm", "act"):
                nxt = next(iter(tail.users)) if _single_user(tail) else None
                if nxt is None:
                    break
                ok = (isinstance(mods.get(nxt.target), _NORMS) if want == "norm" and nxt.op == "call_module"
                      else want == "act" and _is_act(nxt, mods))
                if ok:
                    chain.append(nxt)
                    tail = nxt
        taken.update(chain)
        inside = set(chain)
        inputs: list[fx.Node] = []
        for n in chain:
            for arg in n.all_input_nodes:
                if arg not in inside and arg not in inputs and arg.op != "get_attr":
                    inputs.append(arg)
        out.append(Unit(chain, inputs))
    for u in out:
        shapes = [_shape(i)[1:] if _shape(i) else None for i in u.inputs]
        u.key = " > ".join(_describe(n, mods) for n in u.nodes) + f" @ {shapes}"
    return gm, out


def _unit_module(gm: fx.GraphModule, unit: Unit) -> fx.GraphModule:
    """A GraphModule running only ``unit``'s nodes, one placeholder per external input."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for i, node in enumerate(unit.inputs):
        env[node] = graph.placeholder(f"x{i}")
    for node in unit.nodes:
        for arg in node.all_input_nodes:
            if arg.op == "get_attr" and arg not in env:
                env[arg] = graph.node_copy(arg, lambda n: env[n])
        env[node] = graph.node_copy(node, lambda n: env[n])
    graph.output(env[unit.nodes[-1]])
    return fx.GraphModule(gm, graph)


# ----------------------------------------------------------------------------- timing
def host_fingerprint(backend: str, batch_size: int, threads: int) -> dict[str, str]:
    """What a latency entry depends on besides the layer: CPU, library versions, threads."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"torch": torch.__version__}
    if backend == "onnxruntime":
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    return {"cpu": cpu, "backend": backend, "batch_size": str(batch_size), "threads": str(threads),
            **versions}


def _median_ms(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    from slimkit.metrics.latency import _time

    return statistics.median(_time(fn, warmup, repeats)) * 1e3


def _inputs(shapes: list[tuple[int, ...]], batch_size: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(batch_size, *s, generator=gen) for s in shapes]


def _time_torch(module: nn.Module, shapes, batch_size, threads, warmup, repeats) -> float:
    xs = _inputs(shapes, batch_size)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            return _median_ms(lambda: module(*xs), warmup, repeats)
    finally:
        torch.set_num_threads(before)


def _time_ort(module: nn.Module, shapes, batch_size, threads, warmup, repeats) -> float:
    import onnxruntime as ort

    from slimkit.deploy.onnx_export import session_options

    xs = _inputs(shapes, batch_size)
    names = [f"x{i}" for i in range(len(xs))]
    with tempfile.TemporaryDirectory(prefix="slimkit-lut-") as tmp:
        path = Path(tmp) / "unit.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, tuple(xs), str(path), dynamo=False, opset_version=17,
                              input_names=names)
        session = ort.InferenceSession(str(path), session_options(threads),
                                       providers=["CPUExecutionProvider"])
    feed = {i.name: x.numpy() for i, x in zip(session.get_inputs(), xs)}
    return _median_ms(lambda: session.run(None, feed), warmup, repeats)


_TIMERS = {"torch": _time_torch, "onnxruntime": _time_ort}


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0  # the cheapest op that still makes a kernel call (an empty graph has none)


# ----------------------------------------------------------------------------- table
@dataclass(frozen=True)
class Prediction:
    """Predicted latency in ms: the sum of per-unit entries minus the repeated call overhead."""

    total_ms: float
    per_unit: dict[str, float]
    overhead_ms: float
    measured_now: int  # units that were not in the table and had to be timed

    def table(self) -> str:
        rows = [f"| {name} | {ms:.4f} |" for name, ms in self.per_unit.items()]
        return "\n".join(["| unit | ms |", "|---|---|", *rows,
                          f"| call overhead (x{len(self.per_unit) - 1}) | -{self.overhead_ms:.4f} |",
                          f"| **total** | **{self.total_ms:.4f}** |"])


@dataclass
class LatencyTable:
    """Measured per-unit latencies for one backend, batch size and thread count on this host.

    ``timer(module, input_shapes, batch_size, threads, warmup, repeats) -> ms`` defaults to
    the backend's own timing; tests inject a fake one.
    """

    backend: str = "torch"
    batch_size: int = 1
    threads: int = 1
    path: Path | None = None
    warmup: int = 5
    repeats: int = 30
    timer: Callable[..., float] | None = None
    entries: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UserError(f"unknown latency backend {self.backend!r}; known: {', '.join(BACKENDS)}")
        for name in ("batch_size", "threads", "repeats"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UserError(f"LatencyTable.{name} must be an int >= 1, got {value!r}")
        if self.timer is None:
            self.timer = _TIMERS[self.backend]
        if self.path is not None:
            self.path = Path(self.path)
            self._load()

    @classmethod
    def for_host(cls, backend: str = "torch", batch_size: int = 1, threads: int = 1,
                 cache_dir: str | os.PathLike | None = None, **kw) -> "LatencyTable":
        """The table cached for this host under ``cache_dir`` (default ``$SLIMKIT_CACHE/lut``)."""
        from slimkit.data._cache import cache_root

        root = Path(cache_dir) if cache_dir is not None else cache_root() / "lut"
        digest = hashlib.sha1(json.dumps(host_fingerprint(backend, batch_size, threads),
                                         sort_keys=True).encode()).hexdigest()[:12]
        return cls(backend, batch_size, threads, path=root / f"{backend}-b{batch_size}-t{threads}-{digest}.json", **kw)

    # --- persistence
    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            obj = json.loads(self.path.read_text())
            entries = obj["entries"]
            if not isinstance(entries, dict) or not all(
                    isinstance(k, str) and isinstance(v, (int, float)) and v >= 0 for k, v in entries.items()):
                raise ValueError("entries must map strings to non-negative numbers")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{self.path}: not a slimkit latency table ({exc})") from None
        if obj.get("host") != host_fingerprint(self.backend, self.batch_size, self.threads):
            return  # measured elsewhere: start afresh rather than mix hosts
        self.entries.update({k: float(v) for k, v in entries.items()})

    def save(self) -> None:
        if self.path is None:
            return
        from slimkit.fileio import atomic_write

        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"host": host_fingerprint(self.backend, self.batch_size, self.threads),
                   "entries": self.entries}
        atomic_write(self.path, json.dumps(payload, indent=1, sort_keys=True).encode())

    # --- measurement
    def _measure(self, key: str, module: nn.Module, shapes: list[tuple[int, ...]]) -> float:
        if key not in self.entries:
            self.entries[key] = float(self.timer(module, shapes, self.batch_size, self.threads,
                                                 self.warmup, self.repeats))
        return self.entries[key]

    def call_overhead_ms(self) -> float:
        """Cost of one extra runtime call, measured on the cheapest one-op unit."""
        shape = [(1,)]
        return self._measure(f"{self.backend} | call overhead @ {shape}", fx.symbolic_trace(_Identity()), shape)

    def predict(self, model: nn.Module, input_shape: Sequence[int]) -> Prediction:
        """Predicted latency of ``model`` on a (batch_size, *input_shape) input; new units are
        timed and added to the table (and saved when the table has a path)."""
        was_training = model.training
        model.eval()
        try:
            gm, found = units(model, input_shape)
            before = len(self.entries)
            per_unit: dict[str, float] = {}
            for unit in found:
                shapes = [_shape(i)[1:] for i in unit.inputs]
                per_unit[unit.name] = self._measure(f"{self.backend} | {unit.key}", _unit_module(gm, unit), shapes)
            overhead = self.call_overhead_ms() * max(len(found) - 1, 0)
            measured = len(self.entries) - before
        finally:
            model.train(was_training)
        if measured:
            self.save()
        total = max(sum(per_unit.values()) - overhead, 0.0)
        return Prediction(total, per_unit, overhead, measured)
