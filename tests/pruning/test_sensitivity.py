import pytest
import torch

from slimkit.pruning.sensitivity import Sensitivity, sensitivity_analysis

from ._models import tiny


def test_sensitivity_shape_plot_and_table(tmp_path):
    model = tiny()
    x = torch.randn(32, 3, 8, 8)
    ref = model(x).detach()
    calls = []

    def score(m):
        calls.append(1)
        return -float((m(x) - ref).pow(2).mean())

    sens = sensitivity_analysis(model, score, (0.5, 0.9), ignore=("fc",))
    assert list(sens.accuracy) == ["conv1", "conv2", "conv3", "conv4"]
    assert all(len(v) == 2 for v in sens.accuracy.values())
    assert len(calls) == 1 + 4 * 2 and sens.baseline == 0.0
    assert all(a[1] <= a[0] for a in sens.accuracy.values())  # more pruning, more error
    assert "| conv2 | 432 |" in sens.to_markdown()
    png = sens.plot(tmp_path / "s.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    torch.testing.assert_close(model(x), ref)  # model untouched


def test_layer_ratios_meet_global_target():
    sens = Sensitivity(
        0.9, (0.25, 0.5, 0.75), {"a": (0.9, 0.9, 0.8), "b": (0.9, 0.7, 0.5)}, {"a": 300, "b": 100}
    )
    assert sens.tolerated(0.05) == {"a": 0.5, "b": 0.25}
    r = sens.layer_ratios(target=0.5, max_drop=0.05)
    assert (300 * r["a"] + 100 * r["b"]) / 400 == pytest.approx(0.5, abs=1e-6)
    assert r["a"] == pytest.approx(2 * r["b"])  # proportional to tolerance
