"""`slimkit lowrank`: flags generated from LowRankConfig, ONNX out, errors before work."""

import argparse

import onnx
import pytest

from slimkit.cli import lowrank
from slimkit.errors import UserError


def _parse(argv):
    p = argparse.ArgumentParser()
    lowrank.add_parser(p.add_subparsers())
    return p.parse_args(["lowrank", *argv])


def test_lowrank_command_writes_onnx(tmp_path, capsys):
    out = tmp_path / "f.onnx"
    args = _parse(["lenet300", "--method", "svd", "--rank", "8", "--include", "fc1",
                   "--out", str(out)])
    assert lowrank.run(args) == 0
    text = capsys.readouterr().out
    assert "| fc1 | Linear | decomposed | 8 |" in text
    onnx.checker.check_model(onnx.load(str(out)))


def test_lowrank_command_refuses_bad_flags_before_work(tmp_path):
    with pytest.raises(UserError, match="rank_selection='fixed' needs rank"):
        lowrank.run(_parse(["lenet300", "--method", "svd", "--out", str(tmp_path / "f.onnx")]))
    with pytest.raises(UserError, match="use a .onnx file name"):
        lowrank.run(_parse(["lenet300", "--rank", "4", "--out", str(tmp_path / "f.pt")]))
