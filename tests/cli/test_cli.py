"""CLI smoke tests: every command parses, bad input ends in one clear line."""

import re

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
    assert len(err) == 1 and err[0].startswith("slimkit: error: info: ")


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
    trained = float(re.search(r"top-1 (\d+\.\d\d)%", out).group(1))
    # no --data: the model file's own task (mnist5k) is used, on the same 256-image subset
    code, out, _ = run(capsys, "evaluate", str(model), "--limit", "256")
    assert code == 0 and "on mnist5k/test: top-1 " in out
    assert float(re.search(r"top-1 (\d+\.\d\d)%", out).group(1)) == trained
    code, out, _ = run(capsys, "compare", str(model), str(model), "--limit", "128",
                       "--weights", "r_A=1,r_p=1,r_c=1")
    assert code == 0
    line = next(ln for ln in out.splitlines() if "| compressed |" in ln)
    # the same model against itself: every measured ratio is exactly 1 (latency aside)
    cells = [c.strip() for c in line.split("|")]
    assert cells[-2] == "1.000"  # composite of r_A, r_p, r_c


def test_train_passes_the_training_tricks_to_fit(tmp_path, capsys, monkeypatch):
    import slimkit.train

    seen = {}
    real_fit = slimkit.train.fit

    def spy(model, loader, **kw):
        seen.update(kw)
        return real_fit(model, loader, **kw)

    monkeypatch.setattr(slimkit.train, "fit", spy)  # the command imports it when it runs
    model = tmp_path / "m.pt"
    code, _, _ = run(capsys, "train", "--arch", "lenet5", "--data", "mnist5k", "--limit", "128",
                     "--epochs", "1", "--batch-size", "64", "--label-smoothing", "0.1",
                     "--channels-last", "--precision", "bf16", "--out", str(model))
    assert code == 0 and model.exists()
    assert (seen["label_smoothing"], seen["channels_last"], seen["precision"]) == (0.1, True, "bf16")
    code, _, err = run(capsys, "train", "--label-smoothing", "1.5", "--out", str(tmp_path / "x.pt"))
    assert code == 2 and "--label-smoothing" in err and err.count("\n") == 1
    assert not (tmp_path / "x.pt").exists()


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


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LeNet-5 trained for one epoch on 512 mnist5k images (the task is in the file)."""
    path = tmp_path_factory.mktemp("trained") / "lenet5.pt"
    assert main(["train", "--arch", "lenet5", "--limit", "512", "--epochs", "1",
                 "--batch-size", "32", "--lr", "0.05", "--out", str(path)]) == 0
    return path


def _top1s(text):
    return [float(v) for v in re.findall(r"top-1 (\d+\.\d\d)%", text)]


def test_quantize_writes_int8_onnx_that_evaluate_and_compare_read(trained, tmp_path, capsys):
    q = tmp_path / "int8.onnx"
    code, out, err = run(capsys, "quantize", str(trained), "--calib-size", "64", "--limit",
                         "256", "--out", str(q))
    assert code == 0, err
    float_acc, q_acc = _top1s(out)
    assert abs(float_acc - q_acc) < 3.0  # W8A8 keeps the float accuracy within 3 points
    sizes = dict(re.findall(r"^(float|int8 ONNX): ([\d,]+) bytes", out, re.M))
    assert int(sizes["float"].replace(",", "")) == trained.stat().st_size
    assert int(sizes["int8 ONNX"].replace(",", "")) == q.stat().st_size
    assert 3.5 < trained.stat().st_size / q.stat().st_size < 4.1  # int8 weights: ~4x smaller
    assert not list(tmp_path.glob("*.packed.safetensors"))  # 8 bits: no packed file
    # evaluate runs the .onnx in onnxruntime on the stored task, matching quantize's number
    code, out, _ = run(capsys, "evaluate", str(q), "--limit", "256")
    assert code == 0 and _top1s(out) == [q_acc]
    code, out, _ = run(capsys, "compare", str(trained), str(q), "--limit", "128",
                       "--weights", "r_p=1")
    assert code == 0 and "both models in onnxruntime" in out
    cells = [c.strip() for c in next(ln for ln in out.splitlines()
                                     if "| compressed |" in ln).split("|")]
    assert float(cells[-2]) == pytest.approx(0.25, abs=0.01)  # a quarter of the bytes


def test_quantize_4bit_also_writes_the_packed_file(trained, tmp_path, capsys):
    from slimkit.deploy.packed_file import PACKED_FORMAT
    from slimkit.fileio import read_safetensors, verify_checksum

    q = tmp_path / "w4.onnx"
    code, out, err = run(capsys, "quantize", str(trained), "--bits", "4", "--calib-size", "64",
                         "--limit", "128", "--out", str(q))
    assert code == 0, err
    packed = tmp_path / "w4.packed.safetensors"
    ratio = trained.stat().st_size / packed.stat().st_size
    assert 7.0 < ratio < 8.1  # 32/4 = 8, less the scales, biases and header
    tensors, meta = read_safetensors(packed)
    assert meta["format"] == PACKED_FORMAT and verify_checksum(tensors, meta, str(packed))
    layers = __import__("json").loads(meta["layers"])
    assert {v["bits"] for v in layers.values()} == {4}
    # 431,080 LeNet-5 weights and biases; 430,500 weights at 4 bits = 215,250 bytes of codes
    assert sum(t.numel() for k, t in tensors.items() if k.endswith(".codes")) == 215_250
    assert f"{packed.stat().st_size:,} bytes" in out


def test_evaluate_reads_the_packed_file(trained, tmp_path, capsys):
    q = tmp_path / "w4.safetensors"
    code, out, err = run(capsys, "quantize", str(trained), "--bits", "4", "--act-bits", "0",
                         "--calib-size", "64", "--limit", "256", "--out", str(q))
    assert code == 0, err
    _, sim_acc = _top1s(out)
    # --act-bits 0: the simulated model quantizes weights only, and the packed file reads back
    # as exactly those weights with float activations, so the top-1 matches exactly
    packed = tmp_path / "w4.packed.safetensors"
    code, out, err = run(capsys, "evaluate", str(packed), "--limit", "256")
    assert code == 0, err
    assert _top1s(out) == [sim_acc] and "mnist5k/test" in out  # the stored task
    code, out, err = run(capsys, "info", str(packed))
    assert code == 0 and "431,080 params" in out, err


def test_quantize_simulated_safetensors_still_available(trained, tmp_path, capsys):
    q = tmp_path / "q.safetensors"
    code, out, err = run(capsys, "quantize", str(trained), "--calib-size", "32", "--limit",
                         "64", "--out", str(q))
    assert code == 0 and q.is_file(), err
    assert "simulated quantized top-1" in out


def test_prune_and_quantize_reuse_the_stored_task(trained, tmp_path, capsys):
    small = tmp_path / "small.pt"
    code, out, err = run(capsys, "prune", str(trained), "--target", "0.5", "--limit", "128",
                         "--out", str(small))
    assert code == 0, err
    assert "mnist5k/test: top-1" in out and "before" in out and "after pruning" in out
    assert "(1-0.50)^2 = 25%" in out  # why l1_filter at 0.5 keeps a quarter of the weights
    from slimkit.train import read_model_file

    assert read_model_file(small)["meta"]["task"] == read_model_file(trained)["meta"]["task"]
    code, out, err = run(capsys, "evaluate", str(small), "--limit", "128")
    assert code == 0 and "mnist5k/test" in out, err


def test_zoo_name_without_data_never_borrows_one(capsys):
    code, _, err = run(capsys, "evaluate", "lenet5")
    assert code == 2 and "pass --data" in err and err.count("\n") == 1


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_defaults(capsys, name):
    with pytest.raises(SystemExit):
        main([name, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    if name in ("train", "prune", "quantize", "evaluate", "compare"):
        assert "(default:" in text
    if name == "train":
        assert "--lr LR peak learning rate (default: 0.05; 0.002 with --task detection|segmentation)" in text


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
