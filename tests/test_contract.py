"""The contract suite (like scikit-learn's `parametrize_with_checks`): every registered method
on three zoo models passes the same checks. A method registered tomorrow is checked the day it
lands; `FAST` below must name a quick config for it (the test fails otherwise).

Checks: the input is untouched; the target ratio / bits is reached or the shortfall reported;
the config round-trips through YAML and through CLI flags; excluded layers are identical;
state_dict save/load reproduces the outputs; ONNX export runs; the report names its method.
"""

from __future__ import annotations

import argparse
import copy
import functools
import io
import warnings

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from slimkit import zoo
from slimkit.auto.amc import AMCConfig
from slimkit.auto.haq import HAQConfig
from slimkit.auto.netadapt import NetAdaptConfig
from slimkit.cli import compress as compress_cmd
from slimkit.compress import METHODS, Context, compress, config_from_dict, config_to_dict
from slimkit.compress.cliargs import add_config_args, config_from_args
from slimkit.compress.contract import _load
from slimkit.compress.methods import pruning as P  # noqa: F401
from slimkit.distill import DistillConfig
from slimkit.errors import UserError
from slimkit.lowrank import LowRankConfig
from slimkit.pruning.keep import squash
from slimkit.quant import (
    INQConfig,
    MixedConfig,
    PTQConfig,
    QATConfig,
    ShareConfig,
)
from slimkit.quant.binary import BinaryConfig
from slimkit.quant.hashed import HashConfig
from slimkit.quant.pact import PACTConfig

MODELS = ("lenet5", "lenet300", "resnet20")
SHAPES = {"lenet5": (1, 28, 28), "lenet300": (1, 28, 28), "resnet20": (3, 16, 16)}

# a quick config per method (few steps, small data)
FAST = {
    "magnitude": P.MagnitudeConfig(ratio=0.5),
    "han": P.HanConfig(ratio=0.5, steps=2, train_epochs=1),
    "agp": P.AGPConfig(ratio=0.5, train_epochs=1),
    "nm": P.NMConfig(n=2, m=4),
    "sensitivity": P.SensitivityConfig(ratio=0.5, sparsities=(0.5, 0.9), eval_batches=1),
    "l1_filter": P.L1FilterConfig(ratio=0.5),
    "slimming": P.SlimmingConfig(ratio=0.5, train_epochs=1),
    "ssl": P.SSLConfig(ratio=0.5, train_epochs=1),
    "sfp": P.SFPConfig(ratio=0.5, train_epochs=1),
    "channel_lasso": P.ChannelLassoConfig(ratio=0.5, calib_batches=1),
    "ptq": PTQConfig(weight_bits=8, act_bits=8),
    "mixed": MixedConfig(budget_bits=6.0, candidates=(8, 4), calib_size=16),
    "qat": QATConfig(weight_bits=4, act_bits=8, epochs=1, fold=False),
    "pact": PACTConfig(bits=4, weight_bits=4, epochs=1),
    "inq": INQConfig(bits=5, portions=(0.5, 1.0), epochs_per_step=1),
    "binary": BinaryConfig(mode="ternary", epochs=1),
    "share": ShareConfig(bits=4, max_iter=20),
    "hash": HashConfig(compression=0.25),
    "lowrank": LowRankConfig(method="svd", rank=4),
    "distill": DistillConfig(loss="kd", epochs=1),
}
FAST.update({
    "amc": AMCConfig(target_macs=0.6, episodes=3, warmup=2),
    "netadapt": NetAdaptConfig(target=0.8, step=0.2, short_steps=1, confirm=False, backend="torch",
                               max_iterations=2),
    "haq": HAQConfig(target=0.5, episodes=2, warmup=2, act_bits=8),
})
try:
    from slimkit.lowrank.separable import SeparableConfig

    FAST["separable"] = SeparableConfig()
except ImportError:
    pass

SLOW_MODELS = {"resnet20"}                       # training methods on resnet20 take seconds
QUICK_ON_RESNET = {"magnitude", "nm", "l1_filter", "ptq", "share", "hash", "lowrank", "amc", "netadapt", "haq",
                   "separable"}


# (method, model) pairs where the method does not apply: it must refuse with this message
REFUSES = {
    ("slimming", "lenet5"): "BatchNorm", ("slimming", "lenet300"): "BatchNorm",
    ("channel_lasso", "lenet300"): "no prunable layer pair",
    ("separable", "lenet300"): "matches no Conv2d",
}


_load()  # every method module registers (slimkit.auto's too)


def _cases():
    for name in METHODS.names():
        for arch in MODELS:
            marks = [pytest.mark.slow] if arch in SLOW_MODELS and name not in QUICK_ON_RESNET \
                else []
            yield pytest.param(name, arch, marks=marks, id=f"{name}-{arch}")


@functools.cache
def _data(arch: str):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, *SHAPES[arch], generator=g)
    y = torch.randint(0, 10, (32,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=16)


@functools.cache
def _model(arch: str) -> nn.Module:
    torch.manual_seed(0)
    return zoo.create(arch, in_channels=SHAPES[arch][0]).eval()


def _excluded(model: nn.Module, cfg) -> str | None:
    """The layer the suite excludes: the classifier (the first conv for conv-only methods)."""
    if type(cfg).__name__ == "SeparableConfig":
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        return convs[0] if convs else None
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]


def _with_exclude(cfg, model):
    """The config with one layer excluded."""
    import dataclasses

    last = _excluded(model, cfg)
    if last is None:
        return None
    names = {f.name for f in dataclasses.fields(cfg)}
    if "exclude" in names:
        return dataclasses.replace(cfg, exclude=(last,))
    return None


@functools.cache
def _run(name: str, arch: str):
    model = _model(arch)
    before = copy.deepcopy(model.state_dict())
    cfg = _with_exclude(FAST[name], model) or FAST[name]
    ctx = Context(input_shape=SHAPES[arch], train=_data(arch), teacher=_model(arch),
                  fit_kwargs={"seed": 0})
    with warnings.catch_warnings():  # shortfall warnings are checked from the report
        warnings.simplefilter("ignore")
        res = compress(model, cfg, ctx)
    return model, before, cfg, res


def test_every_registered_method_has_a_fast_config():
    assert set(METHODS.names()) <= set(FAST), sorted(set(METHODS.names()) - set(FAST))
    for name in METHODS.names():
        assert isinstance(FAST[name], METHODS.get(name).config)


@pytest.mark.parametrize("name, arch", list(_cases()))
def test_method_contract(name, arch, tmp_path):
    from slimkit.errors import UserError

    if (name, arch) in REFUSES:
        with pytest.raises(UserError, match=REFUSES[name, arch]):
            _run(name, arch)
        return
    model, before, cfg, res = _run(name, arch)
    spec = METHODS.get(name)
    # input untouched
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert res.model is not model
    assert res.report.method == name
    # runs, and nothing stuck on the modules
    x = torch.randn(2, *SHAPES[arch])
    with torch.no_grad():
        y = res.model.eval()(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    for attr in ("slimkit_prune_ratio", "bit_assignment", "_dfq_scales"):
        assert not hasattr(res.model, attr)
    # target reached or shortfall reported
    _check_target(spec, cfg, res)
    # excluded layers identical
    last = _excluded(model, FAST[name])
    if _with_exclude(FAST[name], model) is not None:
        new = res.model.get_submodule(last)
        old = model.get_submodule(last)
        assert type(new) is type(old), (type(new), type(old))
        if "train" in spec.needs:          # trained with the rest, but not compressed
            assert new.weight.shape == old.weight.shape
            assert int((new.weight == 0).sum()) == int((old.weight == 0).sum())
        else:
            assert torch.equal(new.weight, old.weight)
    # save / load round trip (state_dict through bytes, weights_only)
    buf = io.BytesIO()
    torch.save(res.model.state_dict(), buf)
    buf.seek(0)
    twin = copy.deepcopy(res.model)
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(1.0)
    twin.load_state_dict(torch.load(buf, weights_only=True))
    with torch.no_grad():
        assert torch.equal(twin.eval()(x), y)
    # ONNX export runs (fake-quantized models as int8 QDQ graphs)
    from slimkit.deploy.onnx_export import export_onnx
    from slimkit.deploy.onnx_int8 import export_int8_onnx

    export = export_int8_onnx if getattr(res.model, "qspec", None) else export_onnx
    path = export(squash(res.model), SHAPES[arch], tmp_path / "m.onnx")
    assert path.stat().st_size > 0


def _check_target(spec, cfg, res):
    s = res.report.summary
    if spec.family == "prune":
        assert {"requested", "delivered"} <= set(s)
        short = s["delivered"] < s["requested"] - 0.05
        if short:
            assert any("short" in w for w in res.report.warnings)
        return
    if spec.name in ("ptq", "qat"):
        bits = {r["weight_bits"] for r in res.report.layers}
        assert bits == {cfg.weight_bits}
    elif spec.name == "mixed":
        assert s["mean_weight_bits"] <= cfg.budget_bits + 1e-6
    elif spec.name == "share":
        assert {r["bits"] for r in res.report.layers} == {cfg.bits}
    elif spec.family == "decompose":
        assert s["params_after"] <= s["params_before"]


@pytest.mark.parametrize("name", sorted(FAST))
def test_config_round_trips_through_yaml_and_flags(name):
    cfg = FAST[name]
    cls = type(cfg)
    text = yaml.safe_dump(config_to_dict(cfg))
    assert config_from_dict(cls, yaml.safe_load(text)) == cfg
    try:
        default = cls()
    except ValueError:                       # no default config (e.g. LowRankConfig: rank)
        default = None
    if default is not None:
        assert config_from_dict(cls, {}) == default
    parser = argparse.ArgumentParser()
    add_config_args(parser, cls)
    argv = _argv(cls, config_to_dict(cfg))
    assert config_from_args(cls, parser.parse_args(argv)) == cfg


def _argv(cls, values: dict, prefix: str = "") -> list[str]:
    """Flags that set every field (scalars, lists, booleans, inline YAML)."""
    import dataclasses

    from slimkit.compress.cliargs import _homogeneous, _scalar
    from slimkit.compress.serial import field_types

    argv: list[str] = []
    types_ = field_types(cls)
    for f in dataclasses.fields(cls):
        tp, v = types_[f.name], values[f.name]
        flag = "--" + prefix + f.name.replace("_", "-")
        if dataclasses.is_dataclass(tp):
            argv += _argv(tp, v, prefix=f"{prefix}{f.name}.")
        elif tp is bool:
            argv.append(flag if v else "--no-" + prefix + f.name.replace("_", "-"))
        elif _scalar(tp) is not None:
            argv += [flag, "none" if v is None else str(v)]
        elif _homogeneous(tp) is not None:
            argv += [flag, *map(str, v if isinstance(v, list) else [v])]
        else:
            argv += [flag, yaml.safe_dump(v, default_flow_style=True).strip()]
    return argv


@pytest.mark.parametrize("arch", MODELS)
def test_masked_equals_shrunk(arch):
    """Filter pruning through the contract gives the same outputs as the dense model with the
    same channels zeroed (slimkit.graph.apply_channel_mask, an independent path)."""
    from slimkit.graph import DependencyGraph
    from slimkit.graph.shrink import apply_channel_mask

    model = _model(arch)
    x = torch.randn(4, *SHAPES[arch])
    small = compress(model, P.L1FilterConfig(ratio=0.5), input_shape=SHAPES[arch]).model
    graph = DependencyGraph.build(model, x[:1])
    keep = {}
    for g in graph.groups:
        if g.prunable and g.size > 1:
            l1 = torch.cat(g.out_weights(), 1).abs().sum(1)
            n = max(1, g.size - round(0.5 * g.size))
            keep[g.id] = torch.sort(torch.argsort(l1, descending=True, stable=True)[:n]).values
    masked = apply_channel_mask(model, graph, keep).eval()
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        torch.testing.assert_close(small.eval()(x), masked(x), atol=1e-5, rtol=1e-4)


def test_shortfall_is_reported_warned_and_refused_when_strict():
    from slimkit.errors import UserError

    model = _model("lenet5")
    cfg = P.L1FilterConfig(ratio=0.5, round_to=20)     # 20/50-channel groups round up
    with pytest.warns(UserWarning, match="short of the requested 0.500"):
        res = compress(model, cfg, input_shape=SHAPES["lenet5"])
    assert res.report.summary["requested"] == 0.5
    assert res.report.summary["delivered"] == pytest.approx(0.4386, abs=1e-4)
    with pytest.raises(UserError, match="short of the requested"):
        compress(model, cfg, input_shape=SHAPES["lenet5"], strict=True)


def test_family_verbs_refuse_other_families_and_configs_refuse_unknown_fields():
    from slimkit.compress import prune, quantize
    from slimkit.errors import UserError

    with pytest.raises(UserError, match="is a 'quantize' method, not 'prune'"):
        prune(_model("lenet300"), PTQConfig())
    with pytest.raises(TypeError, match="granularity"):
        P.L1FilterConfig(granularity="element")
    with pytest.raises(UserError, match="unknown key.*granularity"):
        config_from_dict(P.L1FilterConfig, {"granularity": "element"})
    assert quantize(_model("lenet300"), PTQConfig(), calib=_data("lenet300")).model.qspec


# ---- `slimkit compress METHOD`: a command per registered method, flags from its config ----


def _compress_parser():
    p = argparse.ArgumentParser()
    compress_cmd.add_parser(p.add_subparsers())
    return p


def test_every_registered_method_is_a_command():
    p = _compress_parser()
    for name in METHODS.names():
        args = p.parse_args(["compress", name, "lenet300", "--out", "x.onnx"])
        assert args.method == name


def test_nm_and_han_flags_reach_their_configs(tmp_path, capsys):
    p = _compress_parser()
    out = tmp_path / "nm.pt"
    assert compress_cmd.run(p.parse_args(["compress", "nm", "lenet300", "--n", "1", "--m", "4",
                                 "--exclude", "fc3", "--out", str(out)])) == 0
    assert "'delivered': 0.75" in capsys.readouterr().out or out.exists()
    from slimkit.train import load_model

    w = load_model(out).fc1.weight
    assert float((w == 0).float().mean()) == 0.75
    args = p.parse_args(["compress", "han", "lenet300", "--ratio", "0.9", "--steps", "3",
                         "--out", str(tmp_path / "h.pt")])
    assert args.cfg__steps == 3 and args.cfg__ratio == 0.9


def test_quantized_results_are_written_as_onnx(tmp_path):
    p = _compress_parser()
    with pytest.raises(UserError, match="use a .onnx file name"):
        compress_cmd.run(p.parse_args(["compress", "ptq", "lenet300", "--out", str(tmp_path / "q.pt")]))
