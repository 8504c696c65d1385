"""Bad inputs end in exactly one `slimkit: error:` line (exit status 2), never a traceback,
and never change an input file. Python API mistakes raise slimkit's `UserError`.

The CLI runs in-process (`slimkit.cli.main.main`) on a tiny LeNet-5 trained once per module
on 128 embedded mnist5k images; every case hashes the module's input files before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slimkit.cli.main import main
from slimkit.errors import UserError
from slimkit.train.hooks import Hook

ONE_ERROR = re.compile(r"^slimkit( \w+)?: error: \S")


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Input files of every case: a trained model, its int8 ONNX file and broken variants."""
    from slimkit.train import read_model_file, save_model
    from slimkit.train.modelfile import load_model

    d = tmp_path_factory.mktemp("bad-inputs")
    f = {"dir": d}
    model = d / "lenet5.pt"
    assert main(["train", "--arch", "lenet5", "--limit", "128", "--epochs", "1",
                 "--batch-size", "64", "--out", str(model)]) == 0
    f["model"] = model
    onnx = d / "lenet5.onnx"
    assert main(["quantize", str(model), "--calib-size", "32", "--limit", "64",
                 "--out", str(onnx)]) == 0
    f["onnx"] = onnx
    pruned = d / "pruned.pt"
    assert main(["prune", str(model), "--limit", "32", "--out", str(pruned)]) == 0
    f["pruned"] = pruned
    ck = d / "ck300"
    assert main(["train", "--arch", "lenet300", "--limit", "64", "--epochs", "1",
                 "--checkpoint-dir", str(ck), "--out", str(d / "l300.pt")]) == 0
    f["ck300"] = ck

    obj = read_model_file(model)
    net = load_model(model)
    kwargs = obj["arch_kwargs"]
    save_model(d / "notask.pt", net, arch="lenet5", arch_kwargs=kwargs)
    f["notask"] = d / "notask.pt"
    task = dict(obj["meta"]["task"])
    save_model(d / "badtask.pt", net, arch="lenet5", arch_kwargs=kwargs,
               task={**task, "colour": "blue"})
    f["badtask"] = d / "badtask.pt"
    save_model(d / "wrongtask.pt", net, arch="lenet5", arch_kwargs=kwargs,
               task={**task, "input_shape": [3, 32, 32]})
    f["wrongtask"] = d / "wrongtask.pt"
    save_model(d / "unknowndata.pt", net, arch="lenet5", arch_kwargs=kwargs,
               task={**task, "data": "imagenet-21k"})
    f["unknowndata"] = d / "unknowndata.pt"
    nan = load_model(model)
    with torch.no_grad():
        nan.conv1.weight[0, 0, 0, 0] = float("nan")
    save_model(d / "nan.pt", nan, arch="lenet5", arch_kwargs=kwargs, task=task)
    f["nan"] = d / "nan.pt"

    f["garbage"] = d / "garbage.pt"
    f["garbage"].write_bytes(b"this is not a model file at all")
    f["empty"] = d / "empty.pt"
    f["empty"].write_bytes(b"")
    f["truncated"] = d / "truncated.pt"
    f["truncated"].write_bytes(model.read_bytes()[:5000])
    f["fake_onnx"] = d / "fake.onnx"
    f["fake_onnx"].write_bytes(b"\x08\x07garbage that is no protobuf graph")
    f["bad_yaml"] = d / "bad.yaml"
    f["bad_yaml"].write_text("steps: [unclosed\n")
    f["list_yaml"] = d / "list.yaml"
    f["list_yaml"].write_text("- just\n- a list\n")
    f["subdir"] = d / "subdir"
    f["subdir"].mkdir()
    f["dir_pt"] = d / "folder.pt"
    f["dir_pt"].mkdir()
    ro_dir = d / "readonly"
    ro_dir.mkdir()
    ro_file = d / "readonly.pt"
    ro_file.write_bytes(model.read_bytes())
    ro_onnx = d / "readonly.onnx"
    ro_onnx.write_bytes(b"")
    for p in (ro_file, ro_onnx):
        p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    ro_dir.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    f.update(ro_dir=ro_dir, ro_file=ro_file, ro_onnx=ro_onnx)
    yield f
    ro_dir.chmod(stat.S_IRWXU)


def _hashes(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def cli(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    got = capsys.readouterr()
    return code, got.out, got.err


def assert_one_error(code, err, needle):
    lines = err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert ONE_ERROR.match(lines[0]), lines[0]
    assert any(n.lower() in lines[0].lower() for n in needle.split("|")), (needle, lines[0])


# ----------------------------------------------------------------------------- CLI cases
# (argv with {placeholders} from `files`, text the one error line must contain)
CASES = [
    # train
    ("train --arch nope --out {dir}/x.pt", "--arch"),
    ("train --epochs 0 --out {dir}/x.pt", "--epochs"),
    ("train --epochs -1 --out {dir}/x.pt", "--epochs"),
    ("train --epochs two --out {dir}/x.pt", "--epochs"),
    ("train --lr nan --out {dir}/x.pt", "--lr"),
    ("train --lr inf --out {dir}/x.pt", "--lr"),
    ("train --lr -0.1 --out {dir}/x.pt", "--lr"),
    ("train --lr 0 --out {dir}/x.pt", "--lr"),
    ("train --optimizer rmsprop2 --out {dir}/x.pt", "--optimizer"),
    ("train --schedule zigzag --out {dir}/x.pt", "--schedule"),
    ("train --data nope --out {dir}/x.pt", "--data"),
    ("train --data fashion-mnist --root {dir}/nodata --limit 8 --out {dir}/x.pt", "nodata"),
    ("train --data digits --limit 64 --out {dir}/x.pt", "does not accept digits"),
    ("train --data synthetic --limit 64 --out {dir}/x.pt", "does not accept synthetic"),
    ("train --arch lenet300 --data digits --limit 64 --out {dir}/x.pt", "does not accept"),
    ("train --data mnist5k --root {dir} --limit 8 --out {dir}/x.pt", "--root"),
    ("train --limit 8 --out {dir_pt}", "folder"),
    ("train --limit 8 --out {model}/x.pt", "is a file"),
    ("train --limit 8 --out {ro_dir}/x.pt", "read-only|not writable"),
    ("train --limit 8 --out {ro_file}", "read-only"),
    ("train --limit 8 --out {dir}/x.txt", ".pt"),
    ("train --limit 8 --out ''", "--out"),
    ("train --batch-size 0 --out {dir}/x.pt", "--batch-size"),
    ("train --limit 0 --out {dir}/x.pt", "--limit"),
    ("train --limit -5 --out {dir}/x.pt", "--limit"),
    ("train --time-budget 0 --out {dir}/x.pt", "--time-budget"),
    ("train --time-budget nan --out {dir}/x.pt", "--time-budget"),
    ("train --resume --limit 8 --out {dir}/x.pt", "--checkpoint-dir"),
    ("train --resume --checkpoint-dir {ck300} --limit 64 --out {dir}/x.pt", "--resume"),
    ("train --checkpoint-dir {model} --limit 8 --out {dir}/x.pt", "is a file"),
    ("train --checkpoint-dir {ro_dir}/ck --limit 8 --out {dir}/x.pt", "read-only"),
    ("train --seed x --out {dir}/x.pt", "--seed"),
    ("train --limit 8", "--out"),
    ("train --epochs 1 --bogus 3 --out {dir}/x.pt", "--bogus"),
    # evaluate
    ("evaluate {dir}/missing.pt", "neither a model file nor a zoo model"),
    ("evaluate {garbage}", "not a slimkit model file"),
    ("evaluate {empty}", "not a slimkit model file"),
    ("evaluate {truncated}", "truncated.pt"),
    ("evaluate {fake_onnx}", "fake.onnx"),
    ("evaluate {subdir}", "folder"),
    ("evaluate lenet5", "pass --data"),
    ("evaluate {notask}", "pass --data"),
    ("evaluate {badtask}", "unknown keys"),
    ("evaluate {wrongtask}", "stored task"),
    ("evaluate {unknowndata}", "imagenet-21k"),
    ("evaluate {nan}", "NaN"),
    ("evaluate {model} --data digits", "--data digits"),
    ("evaluate {model} --data synthetic", "--data synthetic"),
    ("evaluate {model} --data cifar10", "--data cifar10"),
    ("evaluate {model} --data nope", "--data"),
    ("evaluate {model} --root {dir}", "--root"),
    ("evaluate {model} --split val", "--split"),
    ("evaluate {model} --batch-size 0", "--batch-size"),
    ("evaluate lenet5 --data digits", "does not accept digits"),
    ("evaluate lenet300 --data synthetic --limit 8", "does not accept synthetic"),
    ("evaluate {onnx} --data digits", "--data digits"),
    # info
    ("info resnet9000", "zoo models"),
    ("info {garbage}", "not a slimkit model file"),
    ("info lenet5 --input-shape 3,32", "--input-shape"),
    ("info lenet5 --input-shape 1,28,x", "--input-shape"),
    ("info lenet5 --input-shape 0,28,28", "--input-shape"),
    ("info lenet5 --input-shape 3,32,32", "does not fit"),
    ("info lenet5 --input-shape 1,8,8", "does not fit"),
    ("info {model} --input-shape 1,16,16", "does not fit"),
    ("info {onnx}", "ONNX"),
    ("info lenet5 --num-classes 0", "--num-classes"),
    ("info lenet5 --in-channels -1", "--in-channels"),
    # compare
    ("compare {model} lenet300 --limit 16", "--any-arch"),
    ("compare {model} resnet20 --any-arch --limit 16", "does not accept"),
    ("compare {model} {model} --weights r_Z=1", "r_Z"),
    ("compare {model} {model} --weights r_A", "r_A=1"),
    ("compare {model} {model} --weights r_A=x", "not a number"),
    ("compare {model} {model} --weights r_A=nan", "finite"),
    ("compare {model} {model} --weights r_A=-1", "finite"),
    ("compare {model} {model} --weights ,", "at least one"),
    ("compare {model} {model} --input-shape 3,32,32 --limit 16", "--input-shape"),
    ("compare {model} {model} --data digits", "--data digits"),
    ("compare {model} {model} --out {model}", "also an input"),
    ("compare {model} {model} --out {ro_dir}/report", "read-only"),
    ("compare {model} {model} --out {garbage}", "is a file"),
    ("compare lenet5 lenet5", "pass --data"),
    ("compare {onnx} {model}", "original"),
    ("compare {model} {dir}/missing.pt", "missing.pt"),
    ("compare {model} {garbage}", "not a slimkit model file"),
    ("compare {model} {wrongtask}", "stored task"),
    # prune
    ("prune {model} --method nope --out {dir}/p.pt", "--method"),
    ("prune {model} --target 1.0 --out {dir}/p.pt", "--target"),
    ("prune {model} --target nan --out {dir}/p.pt", "--target"),
    ("prune {model} --target -0.1 --out {dir}/p.pt", "--target"),
    ("prune {model} --target-kind flops --out {dir}/p.pt", "--target-kind"),
    ("prune {model} --target-kind params --target 0 --out {dir}/p.pt", "--target"),
    ("prune {model} --method magnitude --granularity blob --out {dir}/p.pt", "--granularity"),
    ("prune {model} --importance vibes --out {dir}/p.pt", "--importance"),
    ("prune {model} --round-to 0 --out {dir}/p.pt", "--round-to"),
    ("prune {model} --lr inf --out {dir}/p.pt", "--lr"),
    ("prune {model} --finetune-epochs -1 --out {dir}/p.pt", "--finetune-epochs"),
    ("prune {model} --out {model}", "also an input"),
    ("prune {model} --out {dir}/p.onnx", ".pt"),
    ("prune {model} --out {dir_pt}", "folder"),
    ("prune {model} --out {ro_dir}/p.pt", "read-only|not writable"),
    ("prune {onnx} --out {dir}/p.pt", "quantized"),
    ("prune lenet5 --method han --out {dir}/p.pt", "pass --data"),
    ("prune {notask} --finetune-epochs 1 --out {dir}/p.pt", "pass --data"),
    ("prune {model} --data digits --out {dir}/p.pt", "--data digits"),
    ("prune {nan} --out {dir}/p.pt", "NaN"),
    # quantize
    ("quantize {model} --out {dir}/q.pt", ".onnx or .safetensors"),
    ("quantize {model} --out {dir}/q", ".onnx or .safetensors"),
    ("quantize {onnx} --out {onnx}", "also an input"),
    ("quantize {model} --bits 9 --out {dir}/q.onnx", "--bits"),
    ("quantize {model} --bits 1 --out {dir}/q.onnx", "--bits"),
    ("quantize {model} --bits four --out {dir}/q.onnx", "--bits"),
    ("quantize {model} --act-bits 1 --out {dir}/q.onnx", "--act-bits"),
    ("quantize {model} --method gptq --out {dir}/q.onnx", "--method"),
    ("quantize {model} --observer vibes --out {dir}/q.onnx", "--observer"),
    ("quantize {model} --weight-observer vibes --out {dir}/q.onnx", "--weight-observer"),
    ("quantize {model} --calib-size 0 --out {dir}/q.onnx", "--calib-size"),
    ("quantize {model} --method mixed --budget-bits 1 --out {dir}/q.onnx", "--budget-bits"),
    ("quantize {model} --budget-bits nan --out {dir}/q.onnx", "--budget-bits"),
    ("quantize {model} --bias-correction maybe --out {dir}/q.onnx", "--bias-correction"),
    ("quantize lenet5 --out {dir}/q.onnx", "pass --data"),
    ("quantize {model} --data digits --out {dir}/q.onnx", "--data digits"),
    ("quantize {onnx} --out {dir}/q2.onnx", "already quantized"),
    ("quantize {model} --qspec {model} --out {dir}/q.onnx", "also an input"),
    ("quantize {model} --qspec {dir}/q.onnx --out {dir}/q.onnx", "also --out"),
    ("quantize {model} --report {subdir} --out {dir}/q.onnx", "folder"),
    ("quantize {model} --bits 4 --packed-out {dir}/w.bin --out {dir}/q.onnx", ".safetensors"),
    ("quantize {model} --out {ro_dir}/q.onnx", "read-only|not writable"),
    ("quantize {model} --out {ro_onnx}", "read-only"),
    ("quantize {nan} --out {dir}/q.onnx", "NaN"),
    ("quantize {garbage} --out {dir}/q.onnx", "not a slimkit model file"),
    ("quantize {pruned} --out {dir}/q.safetensors", "channel-pruned"),
    ("quantize {model} --skip nomatch* --out {dir}/q.onnx", "--skip"),
    ("quantize {model} --act-bits 4 --out {dir}/q.onnx", "--act-bits"),
    ("compare {model} {pruned} --data synthetic", "--data synthetic"),
    ("prune {pruned} --out {pruned}", "also an input"),
    # run
    ("run {dir}/missing.yaml", "no such file"),
    ("run {subdir}", "folder"),
    ("run {bad_yaml} --check", "bad.yaml"),
    ("run {list_yaml} --check", "list.yaml"),
    # top level
    ("nope", "nope"),
    ("", "required"),
]


@pytest.mark.parametrize("argv,needle", CASES, ids=[c[0][:60] for c in CASES])
def test_cli_bad_input_is_one_line(files, capsys, argv, needle):
    import shlex

    before = _hashes(files["dir"])
    words = [w.format(**files) for w in shlex.split(argv)]
    code, _, err = cli(capsys, *words)
    assert_one_error(code, err, needle)
    assert _hashes(files["dir"]) == before  # no input touched, no output left behind


def test_at_least_100_cases():
    assert len(CASES) + len(API_CASES) >= 100


@pytest.mark.parametrize("argv", [["evaluate", "{garbage}"], ["train", "--lr", "nan",
                                                              "--out", "x.pt"]])
def test_subprocess_gives_one_line(files, argv):
    words = [w.format(**files) for w in argv]
    res = subprocess.run([sys.executable, "-m", "slimkit", *words], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and ONE_ERROR.match(lines[0]) and "Traceback" not in res.stderr


# ----------------------------------------------------------------------------- Python API
class _BlowUp(Hook):
    """A step that turns a weight to inf after a finite loss (an overflow in the update)."""

    def on_step_end(self, model, step):
        with torch.no_grad():
            model.fc2.weight[0, 0] = float("inf")


def _api_cases():
    from slimkit import zoo
    from slimkit.cli import _common as C
    from slimkit.deploy.packing import pack_bits
    from slimkit.pruning import PruneConfig
    from slimkit.quant.qfile import load_quantized
    from slimkit.train import fit, load_model, read_model_file

    nan = torch.zeros(2, 1, 4, 4)
    nan[0, 0, 0, 0] = float("nan")
    lenet = zoo.create("lenet5")
    good_task = C.task_for("mnist5k", None)
    one = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(
        torch.randn(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)), batch_size=4)

    def inf_linear():
        m = torch.nn.Linear(2, 2)
        with torch.no_grad():
            m.weight.fill_(float("inf"))
        return m
    return [
        ("load_model garbage", lambda f: load_model(f["garbage"]), "garbage.pt"),
        ("load_model truncated", lambda f: load_model(f["truncated"]), "truncated.pt"),
        ("read_model_file empty", lambda f: read_model_file(f["empty"]), "empty.pt"),
        ("load_quantized garbage", lambda f: load_quantized(f["garbage"]), "garbage.pt"),
        ("PruneConfig ratio", lambda f: PruneConfig(ratio=1.5), "ratio"),
        ("PruneConfig method", lambda f: PruneConfig(method="nope"), "nope"),
        ("PruneConfig granularity", lambda f: PruneConfig(granularity="blob"), "blob"),
        ("pack_bits 9", lambda f: pack_bits(torch.zeros(4, dtype=torch.uint8), 9), "bits"),
        ("fit diverges on the last step",
         lambda f: fit(zoo.create("lenet5"), one, epochs=1, progress=False,
                       hooks=[_BlowUp()]),
         "diverged"),
        ("task_for unknown", lambda f: C.task_for("nope", None), "--data"),
        ("task record not a dict", lambda f: C.check_task_record([], "m.pt"), "mapping"),
        ("task record missing key",
         lambda f: C.check_task_record({"data": "mnist5k"}, "m.pt"), "lacks"),
        ("task record extra key",
         lambda f: C.check_task_record({**good_task, "x": 1}, "m.pt"), "unknown keys"),
        ("task record bad shape",
         lambda f: C.check_task_record({**good_task, "input_shape": [1, 28]}, "m.pt"),
         "input_shape"),
        ("task record bad classes",
         lambda f: C.check_task_record({**good_task, "num_classes": 0}, "m.pt"),
         "num_classes"),
        ("task record wrong classes",
         lambda f: C.check_task_record({**good_task, "num_classes": 7}, "m.pt"),
         "stored task"),
        ("task record bad root",
         lambda f: C.check_task_record({**good_task, "root": 3}, "m.pt"), "root"),
        ("NaN calibration batch", lambda f: C.check_finite_batches([nan], "calib"), "NaN"),
        ("NaN weights", lambda f: C.check_finite_weights(inf_linear(), "m.pt"), "NaN"),
        ("parse_shape text", lambda f: C.parse_shape("a,b,c"), "--input-shape"),
        ("parse_shape rank", lambda f: C.parse_shape("3,32"), "--input-shape"),
        ("check_out folder", lambda f: C.check_out(f["subdir"]), "folder"),
        ("check_out under a file", lambda f: C.check_out(Path(f["model"]) / "x.pt"), "file"),
        ("check_out read-only", lambda f: C.check_out(f["ro_file"]), "read-only"),
        ("check_out input", lambda f: C.check_out(f["model"], inputs=[str(f["model"])]),
         "input"),
        ("check_out suffix", lambda f: C.check_out("x.pt", suffixes=(".onnx",)), ".onnx"),
        ("check_shape_fits", lambda f: C.check_shape_fits(lenet, (3, 32, 32), "lenet5"),
         "does not fit"),
        ("load_model zoo typo", lambda f: C.load_model("lenet6"), "zoo models"),
    ]


API_CASES = [c[0] for c in _api_cases()]


@pytest.mark.parametrize("name", API_CASES)
def test_api_bad_input_raises_user_error(files, name):
    call, needle = next((c, n) for m, c, n in _api_cases() if m == name)
    before = _hashes(files["dir"])
    with pytest.raises(UserError) as exc:
        call(files)
    text = str(exc.value)
    assert any(n.lower() in text.lower() for n in needle.split("|")), text
    assert _hashes(files["dir"]) == before


def test_task_is_stored_and_reused(files, capsys):
    """The model file remembers mnist5k; evaluate needs no --data and says so."""
    from slimkit.train import read_model_file

    task = read_model_file(files["model"])["meta"]["task"]
    assert task["data"] == "mnist5k" and task["input_shape"] == [1, 28, 28]
    assert task["num_classes"] == 10 and len(task["mean"]) == 1
    code, out, err = cli(capsys, "evaluate", files["model"], "--limit", "32")
    assert code == 0 and "on mnist5k/test: top-1 " in out, err
    props = _onnx_props(files["onnx"])
    assert json.loads(props["slimkit.task"])["data"] == "mnist5k"


def _onnx_props(path):
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}
