import pytest
import torch
from torch import nn

from slimkit import zoo
from slimkit.errors import UserError
from slimkit.train import channel_spec, load_model, read_model_file, resize_to_state_dict, save_model

from _train_tiny import convnet


def _same(a: nn.Module, b: nn.Module, shape) -> None:
    a.eval(), b.eval()
    x = torch.randn(2, *shape)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["lenet300", "lenet5", "resnet20"])
def test_save_load_round_trip(tmp_path, arch):
    model = zoo.create(arch, num_classes=7).eval()
    save_model(tmp_path / "m.pt", model, arch=arch, arch_kwargs={"num_classes": 7}, top1=0.5)
    loaded = load_model(tmp_path / "m.pt")
    assert read_model_file(tmp_path / "m.pt")["meta"]["top1"] == 0.5
    assert type(loaded) is type(model) and not loaded.training
    _same(model, loaded, zoo.input_shape(arch))


def _prune_convs(model: nn.Module, keep: float) -> nn.Module:
    """A hand-made structurally pruned resnet20: keep the first channels of each block's
    inner conv (conv1 -> bn1 -> conv2 input), as a channel pruner would."""
    for name, m in list(model.named_modules()):
        if hasattr(m, "conv1") and hasattr(m, "conv2") and hasattr(m, "bn1"):
            k = max(1, int(m.conv1.out_channels * keep))
            c1, b1, c2 = m.conv1, m.bn1, m.conv2
            n1 = nn.Conv2d(c1.in_channels, k, c1.kernel_size, c1.stride, c1.padding, bias=False)
            n1.weight.data = c1.weight.data[:k].clone()
            nb = nn.BatchNorm2d(k)
            for attr in ("weight", "bias", "running_mean", "running_var"):
                getattr(nb, attr).data = getattr(b1, attr).data[:k].clone() + 0.1
            n2 = nn.Conv2d(k, c2.out_channels, c2.kernel_size, c2.stride, c2.padding, bias=False)
            n2.weight.data = c2.weight.data[:, :k].clone()
            m.conv1, m.bn1, m.conv2 = n1, nb, n2
    return model


def test_pruned_resnet_rebuilds_from_channel_spec(tmp_path):
    pruned = _prune_convs(zoo.create("resnet20"), keep=0.5).eval()
    n_pruned = sum(p.numel() for p in pruned.parameters())
    assert n_pruned < sum(p.numel() for p in zoo.create("resnet20").parameters())
    save_model(tmp_path / "p.pt", pruned, arch="resnet20")
    loaded = load_model(tmp_path / "p.pt")
    assert sum(p.numel() for p in loaded.parameters()) == n_pruned
    _same(pruned, loaded, (3, 32, 32))


def test_resize_infers_shapes_and_keeps_depthwise_groups():
    small = convnet()
    small[0] = nn.Conv2d(1, 4, 3, padding=1)
    small[1], small[3], small[4] = nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.BatchNorm2d(4)
    small[-1] = nn.Linear(4, 4)
    sd = small.state_dict()
    big = resize_to_state_dict(convnet(seed=3), sd)  # no spec: inferred from weight shapes
    assert big[3].groups == 4 and big[3].in_channels == 4 and big[4].num_features == 4
    big.load_state_dict(sd)
    _same(small, big, (1, 8, 8))
    assert channel_spec(big) == channel_spec(small)


def test_resize_leaves_matching_modules_alone():
    m = convnet()
    ids = [id(x) for x in m.modules()]
    resize_to_state_dict(m, m.state_dict())
    assert [id(x) for x in m.modules()] == ids


def test_input_model_is_not_changed_by_save(tmp_path):
    m = zoo.create("lenet5")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    save_model(tmp_path / "m.pt", m, arch="lenet5")
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())


def test_bad_model_files(tmp_path):
    save_model(tmp_path / "m.pt", zoo.create("lenet5"), arch="lenet300")  # wrong arch name
    with pytest.raises(UserError, match="m.pt"):
        load_model(tmp_path / "m.pt")
    save_model(tmp_path / "u.pt", zoo.create("lenet5"), arch="no-such-net")
    with pytest.raises(UserError, match="no-such-net"):
        load_model(tmp_path / "u.pt")
    (tmp_path / "c.pt").write_bytes(b"garbage")
    with pytest.raises(UserError, match="c.pt"):
        load_model(tmp_path / "c.pt")
    with pytest.raises(ValueError, match="arch"):
        save_model(tmp_path / "x.pt", zoo.create("lenet5"), arch="")


def _slice_mobilenet_block(model: nn.Module, keep: int) -> nn.Module:
    """Keep the first `keep` hidden channels of features.2 (expand -> depthwise -> project)."""
    blk = model.features[2].conv
    expand, bn1, dw, bn2, project = blk[0][0], blk[0][1], blk[1][0], blk[1][1], blk[2]
    idx = torch.arange(keep)

    def conv(src, c_in, c_out, groups, w):
        new = nn.Conv2d(c_in, c_out, src.kernel_size, src.stride, src.padding, groups=groups,
                        bias=src.bias is not None)
        new.weight.data = w.clone()
        return new

    def bn(src):
        new = nn.BatchNorm2d(keep)
        for a in ("weight", "bias", "running_mean", "running_var"):
            getattr(new, a).data = getattr(src, a).data[idx].clone()
        return new

    blk[0][0] = conv(expand, expand.in_channels, keep, 1, expand.weight.data[idx])
    blk[0][1] = bn(bn1)
    blk[1][0] = conv(dw, keep, keep, keep, dw.weight.data[idx])
    blk[1][1] = bn(bn2)
    blk[2] = conv(project, keep, project.out_channels, 1, project.weight.data[:, idx])
    return model


def test_pruned_mobilenet_depthwise_rebuilds_with_and_without_spec(tmp_path):
    torch.manual_seed(0)
    pruned = _slice_mobilenet_block(zoo.create("mobilenetv2"), keep=40).eval()
    sd = pruned.state_dict()
    inferred = resize_to_state_dict(zoo.create("mobilenetv2"), sd)  # from shapes alone
    dw = inferred.features[2].conv[1][0]
    assert (dw.groups, dw.in_channels, dw.out_channels) == (40, 40, 40)
    inferred.load_state_dict(sd)
    _same(pruned, inferred, (3, 32, 32))
    save_model(tmp_path / "mb.pt", pruned, arch="mobilenetv2")
    _same(pruned, load_model(tmp_path / "mb.pt"), (3, 32, 32))


def _payload(path):
    return torch.load(path, weights_only=True)


def _resave(path, obj, sign=True):
    from slimkit.train.checkpoint import seal

    torch.save(seal(obj) if sign else obj, path)


def test_task_metadata_round_trips_as_plain_data(tmp_path):
    task = {"dataset": "cifar10", "root": "/data/c10", "input_shape": [3, 32, 32],
            "classes": ["plane", "car"], "normalize": {"mean": [0.49, 0.48, 0.45],
                                                      "std": [0.25, 0.24, 0.26]},
            "subset": None, "augment": False}
    save_model(tmp_path / "m.pt", zoo.create("lenet5"), arch="lenet5", task=task)
    assert read_model_file(tmp_path / "m.pt")["meta"]["task"] == task
    for bad in ({"t": torch.zeros(1)}, {"t": object()}, {1: "int key"}):
        with pytest.raises(UserError, match="plain JSON"):
            save_model(tmp_path / "b.pt", zoo.create("lenet5"), arch="lenet5", task=bad)
    assert not (tmp_path / "b.pt").exists()


def test_flipped_bit_in_a_weight_is_refused(tmp_path):
    import zipfile

    path = tmp_path / "m.pt"
    save_model(path, zoo.create("lenet5"), arch="lenet5")
    blob = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:       # the first tensor storage record's bytes
        info = next(i for i in z.infolist() if "/data/" in i.filename)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    blob[start + info.file_size // 2] ^= 0x08
    path.write_bytes(bytes(blob))
    with pytest.raises(UserError, match="m.pt.*(checksum|corrupt)"):
        load_model(path)


def test_fields_are_validated_behind_the_checksum(tmp_path):
    path = tmp_path / "m.pt"
    save_model(path, zoo.create("lenet5"), arch="lenet5")
    good = _payload(path)
    key = next(k for k in good["state_dict"] if k.endswith("weight"))

    def edited(edit, sign=True):
        obj = _payload(path.with_name("m.pt"))
        edit(obj)
        _resave(tmp_path / "e.pt", obj, sign)
        return tmp_path / "e.pt"

    cases = [
        (lambda o: o["state_dict"].__setitem__(key, o["state_dict"][key].double()),
         f"{key}.*dtype"),
        (lambda o: o["state_dict"].__setitem__(key, o["state_dict"][key] * float("nan")), "NaN"),
        (lambda o: o["state_dict"].pop(key), f"missing keys \\['{key}'\\]"),
        (lambda o: o["state_dict"].__setitem__("x.weight", torch.zeros(1)), "unexpected keys"),
        (lambda o: o["arch_kwargs"].__setitem__("bogus", 1), "cannot build"),
        (lambda o: o.__setitem__("meta", {"channel_spec": {"conv": {"in": -1}}}), "channel_spec"),
        (lambda o: o.__setitem__("extra", 1), "unexpected \\['extra'\\]"),
    ]
    for edit, match in cases:
        with pytest.raises(UserError, match=match):
            load_model(edited(edit))
    with pytest.raises(UserError, match="checksum"):
        load_model(edited(lambda o: o["meta"].__setitem__("top1", 0.99), sign=False))


def test_legacy_file_without_checksum_loads_with_a_warning(tmp_path):
    model = zoo.create("lenet5").eval()
    save_model(tmp_path / "m.pt", model, arch="lenet5")
    obj = _payload(tmp_path / "m.pt")
    obj.pop("sha256")
    obj["format"] = "slimkit.model/1"
    torch.save(obj, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="no checksum"):
        loaded = load_model(tmp_path / "old.pt")
    _same(model, loaded, (1, 28, 28))


def test_half_file_is_half_the_bytes_and_loads_back_as_float32(tmp_path):
    model = zoo.create("resnet20").eval()
    save_model(tmp_path / "full.pt", model, arch="resnet20")
    save_model(tmp_path / "half.pt", model, arch="resnet20", half=True)
    ratio = (tmp_path / "half.pt").stat().st_size / (tmp_path / "full.pt").stat().st_size
    assert 0.45 < ratio < 0.6
    assert read_model_file(tmp_path / "half.pt")["meta"]["stored_half"] is True
    loaded = load_model(tmp_path / "half.pt")
    for k, v in model.state_dict().items():
        back = loaded.state_dict()[k]
        assert back.dtype == v.dtype
        if v.is_floating_point():       # exactly float16's rounding of the original
            torch.testing.assert_close(back, v.half().float(), rtol=0, atol=0)
        else:
            assert torch.equal(back, v)


def test_float16_tensors_without_the_flag_are_refused(tmp_path):
    from slimkit.fileio import atomic_write
    from slimkit.train.checkpoint import seal, torch_writer

    model = zoo.create("lenet300")
    obj = {"format": "slimkit.model/2", "arch": "lenet300", "arch_kwargs": {},
           "state_dict": {k: v.half() for k, v in model.state_dict().items()}, "meta": {}}
    atomic_write(tmp_path / "m.pt", torch_writer(seal(obj)))  # sealed: only the dtype is off
    with pytest.raises(UserError, match="dtype"):
        load_model(tmp_path / "m.pt")
