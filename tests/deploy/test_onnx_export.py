import numpy as np
import pytest
import torch
from torch import nn

from slimkit.deploy.onnx_export import ExportError, OnnxModel, export_onnx, session_options
from slimkit.errors import UserError


def test_export_runs_and_matches_torch_with_dynamic_batch(tmp_path):
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 5)).eval()
    path = export_onnx(m, (3, 8, 8), tmp_path / "m.onnx")
    runner = OnnxModel(path)
    for n in (1, 3):
        x = torch.randn(n, 3, 8, 8)
        np.testing.assert_allclose(runner.run(x.numpy()), m(x).detach().numpy(), atol=1e-5)
    assert runner.size_bytes == path.stat().st_size > 4 * 5 * 36 * 4


class _Unexportable(nn.Module):
    def forward(self, x):
        return torch.linalg.svd(x.flatten(1)).S


def test_export_failure_names_the_op(tmp_path):
    with pytest.raises(ExportError, match="linalg_svd"):
        export_onnx(_Unexportable(), (3, 4, 4), tmp_path / "bad.onnx")


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="input_shape"):
        export_onnx(nn.ReLU(), (3, 0, 4), tmp_path / "x.onnx")
    with pytest.raises(UserError, match="unknown optimisation level 'max'"):
        session_options(level="max")
    with pytest.raises(FileNotFoundError):
        OnnxModel(tmp_path / "missing.onnx")
