"""HAQ: Hardware-Aware Automated Quantization (Wang et al., CVPR 2019), per-layer weight and
activation bits chosen by the DDPG agent under a hardware budget.

The agent visits each conv/linear layer twice (weights, then activations) and outputs a
continuous action mapped to bits in ``[min_bits, max_bits]``; the state is the paper's
embedding (layer index, input and output channels, kernel, stride, feature-map size,
parameters, depthwise flag, weight-or-activation flag, previous action). The budget is a
fraction of the all-8-bit cost under one of three models fed by the layer shapes, not by
proxies such as the average bit width:

- ``size``: weight bytes, sum of params x weight bits / 8;
- ``energy``: Horowitz (ISSCC 2014, 45 nm) per-operation energies, as Han et al. use them: a
  w x a-bit multiply costs 0.2 pJ x (w a / 64), weights are read from DRAM (640 pJ per 32
  bits) and activations from SRAM (5 pJ per 32 bits), scaled by their bits;
- ``latency``: a roofline per layer on a device profile (``slimkit.metrics.devices``) whose
  MAC rate scales as 64 / (w a), a bit-serial accelerator as in HAQ's BISMO/BitFusion
  experiments, and whose memory traffic scales with the bits moved.

As in the paper, an episode whose choice exceeds the budget has its bits lowered layer by
layer (the largest saving first) until it fits. The reward is top-1 on a held-out loader
after post-training quantization (``slimkit.quant.ptq``) without fine-tuning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from slimkit.auto.ddpg import DDPG
from slimkit.errors import UserError
from slimkit.auto.scoring import top1
from slimkit.selection import MethodConfig

__all__ = ["HAQConfig", "HAQResult", "Layer", "cost", "haq", "layers_of"]

log = logging.getLogger(__name__)
_STATE_DIM = 10
BUDGETS = ("size", "energy", "latency")


@dataclass(frozen=True)
class HAQConfig(MethodConfig):
    """HAQ mixed precision (Wang et al. 2019). ``budget`` kind and ``target`` as a fraction
    of its all-8-bit cost (layers outside include/exclude stay float and are not counted); bits in
    ``[min_bits, max_bits]``; ``episodes`` (the first ``warmup`` random); ``device`` names a
    survey profile (``device1``..``device3``) for the latency budget; ``act_bits`` fixes the
    activation bits (None: the agent chooses them too)."""

    budget: str = "size"
    target: float = 0.5
    min_bits: int = 2
    max_bits: int = 8
    episodes: int = 60
    warmup: int = 15
    device: str = "device2"
    act_bits: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        from slimkit.metrics.devices import SURVEY_DEVICES

        if self.budget not in BUDGETS:
            raise UserError(f"HAQConfig.budget must be one of {', '.join(BUDGETS)}, got {self.budget!r}")
        if not 0.0 < self.target <= 1.0:
            raise UserError(f"HAQConfig.target must be in (0, 1], got {self.target!r}")
        ints = isinstance(self.min_bits, int) and isinstance(self.max_bits, int)
        if not (ints and 2 <= self.min_bits <= self.max_bits <= 8):
            raise UserError(f"HAQConfig bits must satisfy 2 <= min_bits <= max_bits <= 8, got "
                            f"{self.min_bits}, {self.max_bits}")
        for name in ("episodes", "warmup", "seed"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise UserError(f"HAQConfig.{name} must be an int >= 0, got {getattr(self, name)!r}")
        if self.episodes < 1:
            raise UserError("HAQConfig.episodes must be >= 1")
        if self.act_bits is not None and not (isinstance(self.act_bits, int) and 2 <= self.act_bits <= 16):
            raise UserError(f"HAQConfig.act_bits must be None or an int in [2, 16], got {self.act_bits!r}")
        if self.device not in SURVEY_DEVICES:
            raise UserError(f"HAQConfig.device must be one of {', '.join(SURVEY_DEVICES)}, got {self.device!r}")


@dataclass(frozen=True)
class Layer:
    """Shape facts of one conv/linear layer at batch 1."""

    name: str
    params: int
    macs: int
    in_elems: int
    out_elems: int
    cin: int
    cout: int
    kernel: int
    stride: int
    feature: int
    depthwise: bool


def layers_of(model: nn.Module, input_shape: Sequence[int]) -> list[Layer]:
    """Every Conv2d/Linear of ``model`` in call order, with its params, MACs and tensor sizes."""
    from slimkit.metrics import count_macs

    counts = count_macs(model, input_shape)
    out = []
    for name, row in counts.per_layer.items():
        m = model.get_submodule(name)
        if isinstance(m, nn.Conv2d):
            cin, cout, k, s = m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0]
            dw = m.groups > 1 and m.groups == m.in_channels
        elif isinstance(m, nn.Linear):
            cin, cout, k, s, dw = m.in_features, m.out_features, 1, 1, False
        else:
            continue
        numel = lambda shape: int(torch.tensor(shape).prod()) if shape else 1  # noqa: E731
        out.append(Layer(name, m.weight.numel(), row.macs, numel(row.input_shape), numel(row.output_shape),
                         cin, cout, k, s, row.input_shape[-1] if len(row.input_shape) > 2 else 1, dw))
    if not out:
        raise UserError("haq: the model has no Conv2d or Linear layer to quantize")
    return out


def cost(layers: Sequence[Layer], bits: Sequence[tuple[int, int]], budget: str, device: str = "device2") -> float:
    """Cost of a bit assignment [(weight_bits, act_bits)] per layer: bytes, pJ or seconds."""
    total = 0.0
    if budget == "latency":
        from slimkit.metrics.devices import SURVEY_DEVICES

        dev = SURVEY_DEVICES[device]
    for layer, (w, a) in zip(layers, bits):
        if budget == "size":
            total += layer.params * w / 8
        elif budget == "energy":
            total += layer.macs * 0.2 * w * a / 64 + layer.params * w * 640 / 32 + layer.in_elems * a * 5 / 32
        else:
            compute = layer.macs * (w * a / 64) / dev.macs_per_s
            memory = (layer.params * w + layer.in_elems * a) / 8 / dev.dram_bw_bytes_per_s
            total += max(compute, memory)
    return total


@dataclass
class HAQResult:
    bits: dict[str, tuple[int, int]]
    reward: float
    cost: float
    cost_8bit: float
    budget: str
    model: nn.Module
    episodes: list[dict] = field(default_factory=list)

    def table(self) -> str:
        rows = [f"| {n} | {w} | {a} |" for n, (w, a) in self.bits.items()]
        return "\n".join([f"best held-out top-1 {100 * self.reward:.2f}% at {self.cost / self.cost_8bit:.3f} "
                          f"of the 8-bit {self.budget}", "| layer | weight bits | act bits |", "|---|---|---|", *rows])




def _fit_budget(layers, bits, budget, limit, device, min_bits, lower_acts=True) -> list[tuple[int, int]]:
    """Lower one bit at a time where it saves the most cost, until the assignment fits."""
    bits = [list(b) for b in bits]
    while cost(layers, bits, budget, device) > limit:
        best = None
        for i in range(len(bits)):
            for j in ((0, 1) if lower_acts else (0,)):
                if bits[i][j] > min_bits:
                    trial = [list(b) for b in bits]
                    trial[i][j] -= 1
                    saving = cost(layers, bits, budget, device) - cost(layers, trial, budget, device)
                    if best is None or saving > best[0]:
                        best = (saving, i, j)
        if best is None or best[0] <= 0:
            break  # nothing left to lower
        bits[best[1]][best[2]] -= 1
    return [tuple(b) for b in bits]


def quantize_with(model: nn.Module, layers: Sequence[Layer], bits, calib: Any,
                  skip: Sequence[str] = ()) -> nn.Module:
    from slimkit.quant.ptq import PTQConfig, quantize_ptq

    cfg = PTQConfig(observer="minmax", layer_bits={layer.name: b for layer, b in zip(layers, bits)},
                    exclude=tuple(skip))
    return quantize_ptq(model, cfg, calib)


def haq(model: nn.Module, config: HAQConfig, *, input_shape: Sequence[int], calib: Any,
        val_loader: Iterable, skip: Sequence[str] = ()) -> HAQResult:
    """Search per-layer (weight, activation) bits under ``config``'s budget; the input model is
    untouched; the result holds the best assignment and its quantized model. ``skip``: layers
    kept float."""
    layers = [layer for layer in layers_of(model, input_shape) if layer.name not in set(skip)]
    if not layers:
        raise UserError("haq: every Conv2d/Linear layer is excluded")
    eight = [(8, 8)] * len(layers)
    full = cost(layers, eight, config.budget, config.device)
    limit = config.target * full
    floor = [(config.min_bits, config.act_bits or config.min_bits)] * len(layers)
    if cost(layers, floor, config.budget, config.device) > limit:
        raise UserError(f"haq: target {config.target} of the 8-bit {config.budget} cannot be met even at "
                        f"{config.min_bits} bits everywhere")
    features = ("cin", "cout", "kernel", "stride", "feature", "params")
    norm = {f: max(getattr(layer, f) for layer in layers) or 1 for f in features}
    agent = DDPG(_STATE_DIM, 1, seed=config.seed)
    span = config.max_bits - config.min_bits + 1
    best, history = None, []
    for episode in range(config.episodes):
        states, actions, chosen = [], [], []
        prev = 1.0
        for i, layer in enumerate(layers):
            pair = []
            for is_act in (0.0, 1.0):
                s = torch.tensor([i / len(layers), layer.cin / norm["cin"], layer.cout / norm["cout"],
                                  layer.kernel / norm["kernel"], layer.stride / norm["stride"],
                                  layer.feature / norm["feature"], layer.params / norm["params"],
                                  float(layer.depthwise), is_act, prev], dtype=torch.float32)
                a = agent.random_action() if episode < config.warmup else agent.act(s)
                b = min(config.max_bits, config.min_bits + int(float(a[0]) * span))
                if is_act and config.act_bits is not None:
                    b = config.act_bits
                pair.append(b)
                prev = float(a[0])
                states.append(s)
                actions.append(a.detach().clone())
            chosen.append(tuple(pair))
        chosen = _fit_budget(layers, chosen, config.budget, limit, config.device, config.min_bits,
                             lower_acts=config.act_bits is None)
        # the actions stored are those actually taken after the budget was enforced
        actions = [torch.tensor([min(1.0, ((b - config.min_bits) + 0.5) / span)]) for pair in chosen for b in pair]
        q = quantize_with(model, layers, chosen, calib, skip)
        reward = top1(q, val_loader, "haq")
        agent.remember(states, actions, reward)
        if episode >= config.warmup:
            agent.update()
        c = cost(layers, chosen, config.budget, config.device)
        history.append({"episode": episode, "reward": reward, "cost": c / full})
        if best is None or reward > best[0]:
            best = (reward, chosen, c, q)
        log.info("haq episode %d: top-1 %.2f%% at %.3f of 8-bit %s", episode, 100 * reward, c / full, config.budget)
    reward, chosen, c, q = best
    return HAQResult({layer.name: b for layer, b in zip(layers, chosen)}, reward, c, full, config.budget, q, history)
