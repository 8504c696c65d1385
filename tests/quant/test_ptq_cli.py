import argparse

import pytest
import torch

from slimkit.cli import quantize as cli
from slimkit.errors import UserError
from slimkit.quant.demo import demo_rows
from slimkit.quant.qfile import load_quantized, save_quantized
from slimkit.quant.ptq import PTQConfig, quantize_ptq
from slimkit import zoo


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = zoo.create("lenet5", num_classes=10).eval()
    x = torch.randn(8, 1, 28, 28)
    cfg = PTQConfig(weight_bits=4, act_bits=8, bias_correction=True)
    q = quantize_ptq(model, cfg, calib=[x])
    path = save_quantized(
        tmp_path / "q.safetensors", q, arch="lenet5", config=cfg, arch_kwargs={"num_classes": 10}
    )
    back = load_quantized(path)
    with torch.no_grad():
        assert torch.equal(back(x), q(x))
    assert back.qspec.keys() == q.qspec.keys()
    with pytest.raises(UserError, match="not a"):
        (tmp_path / "bad.safetensors").write_bytes(b"garbage")
        load_quantized(tmp_path / "bad.safetensors")


def test_demo_rows_names_and_bits():
    torch.manual_seed(0)
    model = zoo.create("lenet5", num_classes=10).eval()
    rows = demo_rows(model, [(torch.randn(8, 1, 28, 28), torch.zeros(8))])
    assert [n for n, _ in rows] == ["PTQ int8 (W8A8)", "PTQ W4A8 (Banner: ACIQ + bias correction)"]
    assert {e["weight_bits"] for e in rows[1][1].qspec.values()} == {4}


def test_cli_parser_and_errors():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli.add_parser(sub)
    args = parser.parse_args(["quantize", "lenet5", "--out", "x", "--method", "nope"])
    with pytest.raises(UserError, match="--method: unknown method 'nope'"):
        cli._config(args)
    args = parser.parse_args(["quantize", "lenet5", "--out", "x", "--method", "banner_w4a8"])
    cfg, _ = cli._config(args)
    assert cfg.weight_bits == 4 and cfg.observer == "aciq"
    args = parser.parse_args(
        ["quantize", "lenet5", "--out", "x", "--act-bits", "0", "--per-tensor"]
    )
    cfg, _ = cli._config(args)
    assert cfg.act_bits is None and not cfg.per_channel


def test_cli_end_to_end_on_embedded_data(tmp_path):
    from slimkit.cli.main import main

    out = tmp_path / "l5.onnx"
    rc = main(["quantize", "lenet5", "--data", "mnist5k", "--calib-size", "32", "--limit", "64",
               "--out", str(out), "--qspec", str(tmp_path / "q.json")])
    assert rc == 0 and out.is_file() and (tmp_path / "q.json").read_text().startswith("{")


def test_cli_suffix_says_which_to_use(tmp_path, capsys):
    from slimkit.cli.main import main

    rc = main(["quantize", "lenet5", "--data", "mnist5k", "--out", str(tmp_path / "int8.pt")])
    err = capsys.readouterr().err
    assert rc == 2 and ".onnx or .safetensors" in err and not (tmp_path / "int8.pt").exists()
