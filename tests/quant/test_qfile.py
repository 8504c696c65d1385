import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from slimkit import zoo
from slimkit.errors import FormatError, UserError
from slimkit.fileio import CHECKSUM_KEY, digest_tensors
from slimkit.quant.ptq import PTQConfig, quantize_ptq
from slimkit.quant.qfile import load_quantized, save_quantized


@pytest.fixture(scope="module")
def qfile(tmp_path_factory):
    torch.manual_seed(0)
    model = zoo.create("lenet5", num_classes=10).eval()
    cfg = PTQConfig(weight_bits=4, act_bits=8)
    q = quantize_ptq(model, cfg, calib=[torch.randn(4, 1, 28, 28)])
    path = tmp_path_factory.mktemp("q") / "q.safetensors"
    save_quantized(path, q, arch="lenet5", config=cfg, arch_kwargs={"num_classes": 10})
    with safe_open(str(path), framework="pt") as f:
        return path, {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())  # noqa: SIM118


def _write(path, tensors, meta, sign=True):
    meta = dict(meta)
    if sign:
        meta[CHECKSUM_KEY] = digest_tensors(tensors, meta)
    save_file(tensors, str(path), metadata=meta)
    return path


def test_flipped_bit_is_refused(qfile, tmp_path):
    path, _, _ = qfile
    blob = bytearray(path.read_bytes())
    blob[len(blob) - 100] ^= 0x01
    (tmp_path / "f.safetensors").write_bytes(bytes(blob))
    with pytest.raises(FormatError, match="f.safetensors.*checksum"):
        load_quantized(tmp_path / "f.safetensors")


def test_fields_are_validated_behind_the_checksum(qfile, tmp_path):
    path, tensors, meta = qfile
    key = next(k for k in tensors if k.endswith("weight"))
    config = json.loads(meta["config"])
    cases = [
        ({**tensors, key: tensors[key].double()}, meta, f"{key}.*dtype"),
        ({**tensors, key: tensors[key].reshape(-1)}, meta, f"{key}.*shape"),
        ({k: v for k, v in tensors.items() if k != key}, meta, "missing keys"),
        ({**tensors, key: tensors[key] * float("inf")}, meta, "NaN or infinite"),
        (tensors, {**meta, "config": json.dumps({**config, "bogus": 1})}, "unknown config"),
        (tensors, {**meta, "config": json.dumps({**config, "weight_bits": 99})}, "bad config"),
        (tensors, {**meta, "arch": "nonet"}, "unknown architecture"),
        (tensors, {**meta, "arch_kwargs": "{"}, "arch_kwargs.*not valid JSON"),
        (tensors, {**meta, "extra": "1"}, "unexpected \\['extra'\\]"),
    ]
    for i, (t, m, match) in enumerate(cases):
        with pytest.raises(UserError, match=match):
            load_quantized(_write(tmp_path / f"{i}.safetensors", t, m))


def test_legacy_file_loads_with_a_warning_and_missing_file_is_a_user_error(qfile, tmp_path):
    path, tensors, meta = qfile
    old = {k: v for k, v in meta.items() if k != CHECKSUM_KEY}
    old["format"] = "slimkit.quantized/1"
    _write(tmp_path / "old.safetensors", tensors, old, sign=False)
    with pytest.warns(UserWarning, match="no checksum"):
        back = load_quantized(tmp_path / "old.safetensors")
    ref = load_quantized(path)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(back(x), ref(x))
    with pytest.raises(UserError, match="no quantized model file"):
        load_quantized(tmp_path / "none.safetensors")


def test_optional_task_record_round_trips_and_is_validated(qfile, tmp_path):
    from safetensors import safe_open

    path, tensors, meta = qfile
    q = load_quantized(path)
    task = {"data": "mnist5k", "input_shape": [1, 28, 28], "classes": 10}
    out = save_quantized(tmp_path / "t.safetensors", q, arch="lenet5",
                         config=PTQConfig(weight_bits=4, act_bits=8),
                         arch_kwargs={"num_classes": 10}, task=task)
    load_quantized(out)
    with safe_open(str(out), framework="pt") as f:
        assert json.loads(f.metadata()["task"]) == task
    with pytest.raises(UserError, match="'task' is not a JSON object"):
        load_quantized(_write(tmp_path / "b.safetensors", tensors, {**meta, "task": "[1]"}))
    with pytest.raises(UserError, match="plain JSON"):
        save_quantized(tmp_path / "c.safetensors", q, arch="lenet5",
                       config=PTQConfig(), task={"x": object()})
