"""The quick budget on the shared data sets, end to end (minutes: marked slow)."""

import time

import pytest


@pytest.mark.slow
def test_quick_budget(tmp_path, shared_datasets):
    import torch

    from slimkit.survey.report import run_survey

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result = run_survey("quick", tmp_path, data_root=shared_datasets, log=lambda m: None)
    assert time.perf_counter() - t0 < 900     # under 10 minutes on an idle 2-core host
    md = (tmp_path / "survey.md").read_text()
    assert "Fashion-MNIST" in md and "CIFAR-10 (JPEG copy)" in md and "NOT CIFAR-10" not in md
    dc = result["tables"][2]
    for row in dc.rows:                       # the trained checkpoints, Han's pipeline
        assert float(row["ratio"].rstrip("x")) > 25 and row["file round trip"] == "exact"
    kd = next(t for t in result["tables"] if t.key == "distillation")
    assert len(kd.data["per_seed"]) == 5
    gain, half = kd.data["gain_ci95"]     # soft targets help, well outside seed noise
    assert gain - half > 0
