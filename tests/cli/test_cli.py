"""CLI smoke tests: every command parses, bad input ends in one clear line."""

import pytest

from slimkit.cli.main import COMMANDS, main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(capsys, name):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert "usage: slimkit " + name in capsys.readouterr().out


def test_bad_arguments_end_in_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["info"])  # missing the model argument
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("slimkit info: error:")


def test_info_counts_lenet5_by_hand(capsys):
    code, out, _ = run(capsys, "info", "lenet5")
    assert code == 0
    # conv1 520 + conv2 25,050 + fc1 400,500 + fc2 5,010 = 431,080 params
    # MACs: 24*24*20*25 + 8*8*50*500 + 800*500 + 500*10 = 2,293,000
    assert "431,080 params" in out and "2,293,000 MACs" in out


def test_unknown_model_is_one_line_error(capsys):
    code, _, err = run(capsys, "info", "resnet9000")
    assert code == 2
    assert err.count("\n") == 1 and "zoo models:" in err


def test_train_evaluate_compare(tmp_path, capsys):
    model = tmp_path / "lenet5.pt"
    code, out, _ = run(capsys, "train", "--arch", "lenet5", "--data", "mnist5k", "--limit", "256",
                       "--epochs", "1", "--batch-size", "64", "--out", str(model))
    assert code == 0 and model.exists()
    code, out, _ = run(capsys, "evaluate", str(model), "--data", "mnist5k", "--limit", "256")
    assert code == 0 and "top-1" in out
    code, out, _ = run(capsys, "compare", str(model), str(model), "--data", "mnist5k",
                       "--limit", "128", "--weights", "r_A=1,r_p=1,r_c=1")
    assert code == 0
    line = next(ln for ln in out.splitlines() if "| compressed |" in ln)
    # the same model against itself: every measured ratio is exactly 1 (latency aside)
    cells = [c.strip() for c in line.split("|")]
    assert cells[-2] == "1.000"  # composite of r_A, r_p, r_c


def test_compare_rejects_bad_weights(tmp_path, capsys):
    code, _, err = run(capsys, "compare", "lenet5", "lenet5", "--weights", "r_Z=1")
    assert code == 2 and "r_Z" in err


def test_demo_runs_end_to_end(tmp_path):
    from slimkit.demo import fp16_rows, run_demo

    report = run_demo(out=tmp_path, epochs=1, progress=False, producers=(fp16_rows,),
                      log=lambda *a: None)
    assert [r.method for r in report.rows] == ["baseline fp32", "fp16 weights"]
    fp16 = report.rows[1]
    assert fp16.ratios.r_p == pytest.approx(0.5, abs=1e-3)  # half the bytes per weight
    assert fp16.ratios.r_c == 1.0
    for suffix in ("md", "csv", "json", "png"):
        assert (tmp_path / f"report.{suffix}").stat().st_size > 0


def test_quantized_file_compares_in_its_int8_runtime(tmp_path, capsys):
    model, quantized = tmp_path / "a.pt", tmp_path / "q.safetensors"
    assert run(capsys, "train", "--arch", "lenet5", "--limit", "256", "--epochs", "1",
               "--out", str(model))[0] == 0
    assert run(capsys, "quantize", str(model), "--bits", "8", "--calib-size", "64",
               "--eval-size", "0", "--out", str(quantized))[0] == 0
    code, out, _ = run(capsys, "compare", str(model), str(quantized), "--limit", "128",
                       "--weights", "r_p=1")
    assert code == 0 and "both models in onnxruntime" in out
    cells = [c.strip() for c in next(ln for ln in out.splitlines() if "| compressed |" in ln).split("|")]
    assert float(cells[-2]) == pytest.approx(0.25, abs=0.01)  # int8 weights: a quarter of the bytes


def test_garbage_model_file_is_named_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model at all")
    code, _, err = run(capsys, "info", str(bad))
    assert code == 2 and "bad.pt: not a slimkit model file" in err and err.count("\n") == 1


@pytest.mark.slow
def test_full_demo_measures_every_family(tmp_path):
    from slimkit.demo import run_demo

    report = run_demo(out=tmp_path, epochs=1, progress=False, log=lambda *a: None)
    rows = {r.method: r for r in report.rows}
    assert len(rows) == 11
    dc = next(r for m, r in rows.items() if m.startswith("Deep Compression"))
    assert dc.measurement.param_bytes == (tmp_path / "lenet5-deep-compression.safetensors").stat().st_size
    assert dc.ratios.r_p < 0.05  # prune 90% + 5-bit codes + Huffman: over 20x smaller
    int8 = next(r for m, r in rows.items() if m.startswith("PTQ int8"))
    assert int8.ratios.r_p == pytest.approx(0.25, abs=0.01)
    assert abs(int8.measurement.accuracy - report.rows[0].measurement.accuracy) < 0.02
    filters = next(r for m, r in rows.items() if "L1 filters" in m)
    assert filters.ratios.r_c < 0.5  # physically fewer channels: fewer MACs, counted, not assumed
