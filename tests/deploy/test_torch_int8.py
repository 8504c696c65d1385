import pytest
import torch
from torch import nn

from slimkit.deploy.torch_int8 import convert_torch_int8, float_modules, state_dict_bytes
from slimkit.errors import UserError

from test_export_models import Mish, trained_tiny


def test_x86_int8_model_runs_and_agrees_with_float():
    model, x = trained_tiny()
    q = convert_torch_int8(model, [x[:64], x[64:128]], (3, 8, 8))
    kinds = {type(m).__module__ for m in q.modules()}
    assert any(k.startswith("torch.ao.nn.quantized") for k in kinds)
    with torch.no_grad():
        agree = (q(x).argmax(1) == model(x).argmax(1)).float().mean().item()
    assert agree >= 0.95
    left = float_modules(q)
    # every conv/linear runs int8; the functional relu after c1 is not fused by FX: named
    assert not any("Conv" in n or "Linear" in n for n in left) and left == ["relu (relu)"]
    assert state_dict_bytes(q) < state_dict_bytes(model)
    assert isinstance(model.c1, nn.Conv2d) and type(model.c1) is nn.Conv2d  # input untouched


def test_float_leftovers_are_named():
    model, x = trained_tiny(act=Mish(), steps=2)
    q = convert_torch_int8(model, [x[:32]], (3, 8, 8))
    left = float_modules(q)
    assert any("softplus" in n for n in left), left


def test_bad_backend_and_empty_calibration():
    model, x = trained_tiny(steps=1)
    with pytest.raises(UserError, match="unknown backend 'arm'"):
        convert_torch_int8(model, [x], (3, 8, 8), backend="arm")
    with pytest.raises(UserError, match="no batches"):
        convert_torch_int8(model, [], (3, 8, 8))
