"""Post-training quantization: fold BN, wrap conv/linear, calibrate on unlabeled data.

Follows Krishnamoorthi 2018 ("Quantizing deep convolutional networks for efficient
inference: A whitepaper") and Jacob et al. 2018: per-channel symmetric weights, per-tensor
affine (unsigned) activations at the input of every conv / linear, ranges chosen by a named
observer. Options: cross-layer equalization and bias correction (Nagel et al. 2019, DFQ;
see `slimkit.quant.dfq`), per-layer bit widths (`layer_bits`, see `slimkit.quant.mixed`)
and the 4-bit recipe of Banner et al. 2019 (`PRESETS.get("banner_w4a8")()`).

>>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
>>> q = quantize_ptq(net, PTQConfig(weight_bits=8, act_bits=8, observer="kl"),
...                  calib=[torch.randn(16, 1, 8, 8)])
>>> q.qspec["0"]["weight_bits"], type(q[0]).__name__
(8, 'QuantConv2d')

Only conv / linear inputs and weights are (fake-)quantized; residual adds and the network
output stay float, as in a QDQ graph where those ops run in int8 only when an exporter
fuses them.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from slimkit._registry import Registry
from slimkit.errors import UserError
from slimkit.quant.api import calib_batches, register_quantizer, run_batches
from slimkit.quant.core import MAX_BITS, MIN_BITS, QScheme
from slimkit.quant.fold import fold_bn
from slimkit.quant.modules import QUANT_MODULES, QuantMixin
from slimkit.quant.observers import OBSERVERS
from slimkit.selection import MethodConfig, match_globs

__all__ = [
    "PTQConfig",
    "quantize_ptq",
    "prepare",
    "calibrate_",
    "bias_correct_",
    "quant_layers",
    "fold_layer_scales",
    "build_qspec",
    "PRESETS",
    "BIAS_CORRECTIONS",
]

_BIAS_CORRECTION = (False, True, "empirical", "analytic")


def fold_skip(cfg: MethodConfig) -> None:
    """Validate include / exclude and move the deprecated `skip` globs into `exclude`
    (`skip` reads () afterwards, so a config round-trips without it)."""
    skip = cfg.skip
    if isinstance(skip, str) or not isinstance(skip, (tuple, list)) or \
            not all(isinstance(g, str) for g in skip):
        raise UserError(f"skip must be a list of fqn globs, got {skip!r}")
    MethodConfig.__post_init__(cfg)
    if skip:
        import warnings

        warnings.warn(f"{type(cfg).__name__}(skip=...) is deprecated; use exclude=...",
                      DeprecationWarning, stacklevel=4)
        extra = tuple(g for g in skip if g not in cfg.exclude)
        object.__setattr__(cfg, "exclude", cfg.exclude + extra)
    object.__setattr__(cfg, "skip", ())


def _check_bits(value: Any, what: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_BITS <= value <= MAX_BITS:
        raise ValueError(
            f"{what} must be an int in [{MIN_BITS}, {MAX_BITS}]"
            f"{' or None' if allow_none else ''}, got {value!r}"
        )


@dataclass(frozen=True)
class PTQConfig(MethodConfig):
    """Post-training quantization settings.

    weight_bits / act_bits: bit widths (act_bits=None keeps activations float).
    observer / weight_observer: keys of `OBSERVERS` for activations / weights.
    per_channel: per-output-channel weight scales. symmetric_weights: zero point 0.
    bias_correction: False, True / "empirical" (calibration data) or "analytic" (BN
    statistics, data-free). equalize: cross-layer equalization first. bias_absorption:
    DFQ's high-bias absorption across conv -> ReLU -> conv (uses BN statistics).
    layer_bits: {fqn glob: (weight_bits, act_bits)}; the first matching glob wins.
    include / exclude: module fqn globs quantized / left in float (the one layer selection,
    `slimkit.selection`; a glob naming a parent covers its children; a glob matching no
    module raises). skip: deprecated alias of exclude.
    calib_size: cap on calibration samples (None: all).
    """

    weight_bits: int = 8
    act_bits: int | None = 8
    observer: str = "minmax"
    weight_observer: str = "minmax"
    per_channel: bool = True
    symmetric_weights: bool = True
    bias_correction: bool | str = False
    equalize: bool = False
    bias_absorption: bool = False
    layer_bits: Mapping[str, tuple[int, int | None]] = field(default_factory=dict)
    skip: tuple[str, ...] = ()
    calib_size: int | None = None
    observer_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_bits(self.weight_bits, "weight_bits")
        _check_bits(self.act_bits, "act_bits", allow_none=True)
        for what, name in (("observer", self.observer), ("weight_observer", self.weight_observer)):
            if name not in OBSERVERS:
                raise ValueError(f"unknown {what} {name!r}; known: {', '.join(OBSERVERS.names())}")
        if self.bias_correction not in _BIAS_CORRECTION:
            raise ValueError(
                f"bias_correction must be one of {_BIAS_CORRECTION}, got {self.bias_correction!r}"
            )
        fold_skip(self)
        lb = dict(self.layer_bits)
        for glob, bits in lb.items():
            if not isinstance(bits, (tuple, list)) or len(bits) != 2:
                raise ValueError(
                    f"layer_bits[{glob!r}] must be (weight_bits, act_bits), got {bits!r}"
                )
            _check_bits(bits[0], f"layer_bits[{glob!r}] weight bits")
            _check_bits(bits[1], f"layer_bits[{glob!r}] act bits", allow_none=True)
            lb[glob] = (bits[0], bits[1])
        object.__setattr__(self, "layer_bits", lb)
        object.__setattr__(self, "observer_kwargs", dict(self.observer_kwargs))
        if self.calib_size is not None and (
            not isinstance(self.calib_size, int) or self.calib_size < 1
        ):
            raise ValueError(f"calib_size must be a positive int or None, got {self.calib_size!r}")

    def schemes(self, wbits: int, abits: int | None) -> tuple[QScheme, QScheme | None]:
        w = QScheme(
            bits=wbits,
            symmetric=self.symmetric_weights,
            per_channel=self.per_channel,
            ch_axis=0,
            signed=True,
        )
        a = None if abits is None else QScheme(bits=abits, symmetric=False, signed=False)
        return w, a


# Named configurations: PRESETS.get(name)() -> PTQConfig
PRESETS: Registry[Callable[[], PTQConfig]] = Registry("PTQ preset")


@PRESETS.register("int8")
def _int8() -> PTQConfig:
    """W8A8, per-channel min/max weights, min/max activations (Krishnamoorthi 2018)."""
    return PTQConfig(weight_bits=8, act_bits=8)


@PRESETS.register("banner_w4a8")
def _banner() -> PTQConfig:
    """Banner et al. 2019: per-channel 4-bit weights, ACIQ clipping, bias correction."""
    return PTQConfig(
        weight_bits=4,
        act_bits=8,
        per_channel=True,
        observer="aciq",
        weight_observer="aciq",
        bias_correction="empirical",
    )


@PRESETS.register("dfq_int8")
def _dfq() -> PTQConfig:
    """Nagel et al. 2019: per-tensor int8 with equalization and data-free bias correction."""
    return PTQConfig(
        weight_bits=8, act_bits=8, per_channel=False, equalize=True, bias_correction="analytic"
    )


# ---------------------------------------------------------------------------------------
_PARAM_FREE_OK = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


def _covered(names: list[str], globs: tuple[str, ...], what: str) -> set[str]:
    """Modules matched by a glob or under a matched parent (a glob matching none raises)."""
    hit = match_globs(names, globs, what)
    return {n for n in names if any(n == h or n.startswith(h + ".") for h in hit)}


def _plan(model: nn.Module, config: PTQConfig,
          filter_fn: Callable[[nn.Module, str], bool] | None = None,
          ) -> dict[str, tuple[int, int | None]]:
    """fqn -> (weight_bits, act_bits) for every selected conv/linear; checks globs."""
    plan: dict[str, tuple[int, int | None]] = {}
    used_bits: set[str] = set()
    names = [n for n, _ in model.named_modules() if n]
    chosen = _covered(names, config.include, "include") if config.include != ("*",) \
        else set(names)
    chosen -= _covered(names, config.exclude, "exclude")
    for name, mod in model.named_modules():
        if not name or name not in chosen:
            continue
        if isinstance(mod, QuantMixin):
            continue
        if type(mod) in QUANT_MODULES:
            if filter_fn is not None and not filter_fn(mod, name):
                continue
            bits = (config.weight_bits, config.act_bits)
            for glob, lb in config.layer_bits.items():
                if fnmatch.fnmatchcase(name, glob):
                    used_bits.add(glob)
                    bits = lb
                    break
            plan[name] = bits
        elif any(True for _ in mod.parameters(recurse=False)) and not isinstance(
            mod, _PARAM_FREE_OK
        ) and not _owns_bare_parameters(mod):
            raise UserError(
                f"layer {name!r} ({type(mod).__name__}) is not supported by post-training "
                f"quantization; supported: Conv2d, Linear. Add it to exclude=(...) to keep it "
                f"float"
            )
    unused = [g for g in config.layer_bits if g not in used_bits]
    if unused:
        raise UserError(
            f"layer_bits glob(s) {unused} match no layer; layers: {sorted(plan) or '(none)'}"
        )
    return plan


def _owns_bare_parameters(mod: nn.Module) -> bool:
    """A block (a module with children) that also holds parameters of its own, e.g. a
    ConvNeXt layer scale ``gamma * x`` (Liu et al. 2022): its children are quantized, and a
    multiply by such a parameter that cannot be folded stays float."""
    return any(True for _ in mod.children()) and any(True for _ in mod.parameters(recurse=False))


@torch.no_grad()
def fold_layer_scales(model: nn.Module) -> nn.Module:
    """Fold each per-channel scale parameter that multiplies a Conv2d / Linear output alone
    (``gamma * conv(x)``, ``gamma * linear(x)``, the layer called once) into that layer's weight
    and bias: exact in real arithmetic, and the layer then quantizes per channel as usual. The
    block is replaced by its ``torch.fx`` trace without the multiply (same submodule names);
    blocks fx cannot trace, or scales used otherwise, are left as they are (that multiply
    stays float). Modifies ``model`` in place and returns it."""
    import operator

    import torch.fx as fx

    for name, mod in list(model.named_modules()):
        if not _owns_bare_parameters(mod):
            continue
        own = dict(mod.named_parameters(recurse=False))
        try:
            gm = fx.symbolic_trace(mod)
        except Exception:  # noqa: BLE001 - untraceable blocks keep their float multiply
            continue
        calls: dict[str, int] = {}
        for node in gm.graph.nodes:
            if node.op == "call_module":
                calls[node.target] = calls.get(node.target, 0) + 1
        folded = False
        for node in list(gm.graph.nodes):
            if node.op != "call_function" or node.target not in (operator.mul, torch.mul) or len(node.args) != 2:
                continue
            for p, y in (node.args, node.args[::-1]):
                if not (isinstance(p, fx.Node) and p.op == "get_attr" and p.target in own
                        and isinstance(y, fx.Node) and y.op == "call_module" and len(y.users) == 1
                        and calls.get(y.target) == 1):
                    continue
                layer, gamma = gm.get_submodule(y.target), own[p.target].detach()
                if isinstance(layer, nn.Linear) and gamma.dim() >= 1 and gamma.shape[-1] == layer.out_features \
                        and gamma.numel() == layer.out_features:
                    g = gamma.reshape(-1)
                elif isinstance(layer, nn.Conv2d) and gamma.numel() == layer.out_channels and \
                        (gamma.dim() == 3 and gamma.shape[1:] == (1, 1) or
                         gamma.dim() == 4 and gamma.shape[0] == 1 and gamma.shape[2:] == (1, 1)):
                    g = gamma.reshape(-1)
                else:
                    continue
                layer.weight.mul_(g.reshape(-1, *([1] * (layer.weight.dim() - 1))))
                if layer.bias is not None:
                    layer.bias.mul_(g)
                node.replace_all_uses_with(y)
                gm.graph.erase_node(node)
                folded = True
                break
        if folded:
            gm.graph.eliminate_dead_code()
            gm.recompile()
            used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
            for attr in own:
                if attr not in used and hasattr(gm, attr):
                    delattr(gm, attr)
            if name:
                model.set_submodule(name, gm)
            else:
                return gm
    return model


def quant_layers(model: nn.Module) -> dict[str, QuantMixin]:
    """fqn -> QuantConv2d / QuantLinear, in module order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, QuantMixin)}


def prepare(model: nn.Module, config: PTQConfig) -> nn.Module:
    """New eval-mode model: BN folded (and equalized if asked), conv/linear wrapped, uncalibrated."""
    return prepare_with_scales(model, config)[0]


def prepare_with_scales(model: nn.Module, config: PTQConfig) -> tuple[nn.Module, dict]:
    """`prepare`, and the cross-layer equalization scales it applied ({} without DFQ)."""
    out = fold_layer_scales(fold_bn(model).eval())
    scales: dict = {}
    if config.equalize or config.bias_absorption:
        from slimkit.quant.dfq import (
            absorb_biases_,
            equalize_,
        )  # dfq builds on this module's pieces

        scales = equalize_(out) if config.equalize else {}
        if config.bias_absorption:
            absorb_biases_(out, model, scales)
    for name, (wbits, abits) in _plan(out, config).items():
        mod = out.get_submodule(name)
        wscheme, ascheme = config.schemes(wbits, abits)
        out.set_submodule(name, QUANT_MODULES[type(mod)](mod, wscheme, ascheme))
    return out, scales


@torch.no_grad()
def calibrate_(qmodel: nn.Module, batches: list[Tensor], config: PTQConfig) -> nn.Module:
    """Set weight qparams from the weights and activation qparams from `batches` (float run)."""
    layers = quant_layers(qmodel)
    if not layers:
        raise UserError(
            "the model has no Conv2d / Linear layer to quantize "
            "(a bare layer must be wrapped, e.g. in nn.Sequential)"
        )
    for layer in layers.values():
        layer.calibrate_weight(config.weight_observer)
        layer.enabled = False
        if layer.act_scheme is not None:
            layer.act_observer = OBSERVERS.get(config.observer)(
                layer.act_scheme, **config.observer_kwargs
            )
    try:
        run_batches(qmodel, batches)
    finally:
        for layer in layers.values():
            obs, layer.act_observer = layer.act_observer, None
            if obs is not None:
                layer.set_act_qparams(*obs.qparams())
            layer.enabled = True
    return qmodel


class _Stop(Exception):
    pass


def _ensure_bias(layer: QuantMixin) -> None:
    if layer.bias is None:
        layer.bias = nn.Parameter(torch.zeros(layer.weight.shape[0], dtype=layer.weight.dtype))


def _channel_sum(y: Tensor) -> tuple[Tensor, int]:
    dims = [d for d in range(y.dim()) if d != 1]  # (N, C, ...) -> (C,)
    return y.sum(dim=dims), y.numel() // y.shape[1]


@torch.no_grad()
def _output_means(
    qmodel: nn.Module, batches: list[Tensor], names: list[str], stop_after: str | None = None
) -> dict[str, Tensor]:
    """Per-channel mean output of the named layers over the batches (optionally stopping
    the forward right after `stop_after`)."""
    acc: dict[str, list[Any]] = {n: [None, 0] for n in names}
    handles = []
    for n in names:

        def hook(mod: nn.Module, inputs: Any, output: Tensor, n: str = n) -> None:
            s, k = _channel_sum(output)
            acc[n][0] = s if acc[n][0] is None else acc[n][0] + s
            acc[n][1] += k
            if n == stop_after:
                raise _Stop

        handles.append(qmodel.get_submodule(n).register_forward_hook(hook))
    try:
        for x in batches:
            try:
                qmodel(x)
            except _Stop:
                pass
    finally:
        for h in handles:
            h.remove()
    return {n: v[0] / v[1] for n, v in acc.items() if v[0] is not None}


@torch.no_grad()
def bias_correct_(qmodel: nn.Module, batches: list[Tensor]) -> nn.Module:
    """Empirical bias correction (Nagel et al. 2019, Sec. 4.2; Banner et al. 2019).

    The per-channel mean output of every quantized layer is matched to the float
    network's (the same model with quantization disabled), layer by layer in order, so
    each correction sees the already-corrected layers before it. The shift the quantized
    layer accumulates (its weights, its input quantization and the errors upstream) is
    subtracted from its bias; labels are never used.
    """
    layers = quant_layers(qmodel)
    names = list(layers)
    states = {n: (m.weight_enabled, m.act_enabled) for n, m in layers.items()}
    for m in layers.values():
        m.enabled = False
    try:
        ref = _output_means(qmodel, batches, names)
    finally:
        for n, m in layers.items():
            m.weight_enabled, m.act_enabled = states[n]
    for name, layer in layers.items():
        _ensure_bias(layer)
        got = _output_means(qmodel, batches, [name], stop_after=name)
        if name in got and name in ref:
            layer.bias.sub_(got[name] - ref[name])
    return qmodel


# bias correction modes: fn(qmodel, float_model, calib_batches) -> None (in place)
BIAS_CORRECTIONS: Registry[Callable[[nn.Module, nn.Module, list[Tensor]], Any]] = Registry(
    "bias correction"
)


@BIAS_CORRECTIONS.register("empirical")
def _empirical(qmodel: nn.Module, model: nn.Module, batches: list[Tensor],
               scales: dict | None = None) -> None:
    bias_correct_(qmodel, batches)


@BIAS_CORRECTIONS.register("analytic")
def _analytic(qmodel: nn.Module, model: nn.Module, batches: list[Tensor],
              scales: dict | None = None) -> None:
    from slimkit.quant.dfq import analytic_bias_correct_  # dfq builds on ptq's modules

    analytic_bias_correct_(qmodel, model, scales=scales)


def build_qspec(qmodel: nn.Module) -> dict[str, dict[str, Any]]:
    return {name: layer.qspec_entry() for name, layer in quant_layers(qmodel).items()}


def quantize_ptq(model: nn.Module, config: PTQConfig | None = None, calib: Any = None) -> nn.Module:
    """New fake-quantized model (eval mode) with `.qspec`; `model` is not modified."""
    config = config or PTQConfig()
    if not isinstance(config, PTQConfig):
        raise UserError(f"config must be a PTQConfig, got {type(config).__name__}")
    batches = calib_batches(calib, config.calib_size)
    qmodel, scales = prepare_with_scales(model, config)
    calibrate_(qmodel, batches, config)
    if config.bias_correction:
        mode = "empirical" if config.bias_correction is True else config.bias_correction
        BIAS_CORRECTIONS.get(mode)(
            qmodel, model, batches, scales if (config.equalize or config.bias_absorption) else None)
    qmodel.qspec = build_qspec(qmodel)
    return qmodel


@register_quantizer(PTQConfig)
def _ptq_handler(
    model: nn.Module, config: PTQConfig, *, calib: Any = None, **kwargs: Any
) -> nn.Module:
    if kwargs:
        raise UserError(f"unexpected arguments for PTQ: {sorted(kwargs)}")
    return quantize_ptq(model, config, calib)


def with_bits(config: PTQConfig, weight_bits: int, act_bits: int | None) -> PTQConfig:
    """Copy of `config` with other global bit widths."""
    return replace(config, weight_bits=weight_bits, act_bits=act_bits)
