"""`slimkit distill`: flags generated from DistillConfig; the student file loads back."""

import argparse

import pytest

from slimkit.cli import distill
from slimkit.train import load_model


@pytest.mark.slow  # loads mnist5k and trains: ~5 s
def test_distill_command_trains_and_writes_a_model_file(tmp_path, capsys):
    p = argparse.ArgumentParser()
    distill.add_parser(p.add_subparsers())
    out = tmp_path / "s.pt"
    args = p.parse_args(["distill", "lenet5", "--loss", "kd", "--T", "2", "--epochs", "1",
                         "--data", "mnist5k", "--limit", "32", "--out", str(out)])
    assert distill.run(args) == 0
    assert "train_loss" in capsys.readouterr().out
    assert type(load_model(out)).__name__ == "LeNet5"
