import pytest
import torch
from torch import nn

from slimkit.errors import UserError
from slimkit.pruning.sparse import SparseConv2d, SparseLinear, load_sparse, save_sparse, to_sparse


def _prune(layer, keep=0.3):
    torch.manual_seed(0)
    with torch.no_grad():
        layer.weight.mul_((torch.rand_like(layer.weight) < keep).float())
    return layer


def test_sparse_linear_equals_dense_masked_forward():
    lin = _prune(nn.Linear(20, 7))
    x = torch.randn(5, 20)
    torch.testing.assert_close(SparseLinear.from_dense(lin)(x), lin(x))


@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2)])
def test_sparse_conv_equals_dense(stride, padding, dilation):
    conv = _prune(nn.Conv2d(3, 5, 3, stride=stride, padding=padding, dilation=dilation))
    x = torch.randn(2, 3, 11, 9)
    torch.testing.assert_close(SparseConv2d.from_dense(conv)(x), conv(x), atol=1e-5, rtol=1e-5)


def test_storage_bytes_hand_checked():
    lin = nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0, 0, 2], [0, 0, 0, 0], [0, 3, 0, 0]]))
    sp = SparseLinear.from_dense(lin)
    # 3 values fp32 (12) + 3 col idx int32 (12) + 4 row ptrs int32 (16) + 3 bias fp32 (12)
    assert sp.storage_bytes() == 12 + 12 + 16 + 12
    assert sp.index_bits() == 32 and sp.nnz() == 3
    assert sp.weight_csr.crow_indices().tolist() == [0, 2, 2, 3]


def test_to_sparse_respects_min_sparsity_and_grouped_convs():
    model = nn.Sequential(
        _prune(nn.Conv2d(4, 4, 3, padding=1)),
        nn.Conv2d(4, 4, 3, groups=4),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
    )
    sp = to_sparse(model, min_sparsity=0.5)
    assert isinstance(sp[0], SparseConv2d) and isinstance(sp[1], nn.Conv2d)
    assert isinstance(sp[3], nn.Linear)  # dense layer left alone
    assert isinstance(model[0], nn.Conv2d)  # input untouched
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(sp(x), model(x), atol=1e-5, rtol=1e-5)


def test_safetensors_round_trip(tmp_path):
    model = nn.Sequential(
        _prune(nn.Conv2d(2, 3, 3)), nn.ReLU(), nn.Flatten(), _prune(nn.Linear(3 * 4 * 4, 64), 0.1)
    )
    sp = to_sparse(model, 0.5)
    path = tmp_path / "m.safetensors"
    size = save_sparse(sp, path)
    dense_bytes = sum(p.numel() * 4 for p in model.parameters())
    assert 0 < size < dense_bytes
    back = load_sparse(path, model)
    x = torch.randn(3, 2, 6, 6)
    torch.testing.assert_close(back(x), model(x), atol=1e-5, rtol=1e-5)
    assert isinstance(back[3], SparseLinear)


def test_load_rejects_foreign_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(UserError, match="not a slimkit-sparse"):
        load_sparse(tmp_path / "x.safetensors", nn.Linear(1, 1))


def _saved(tmp_path):
    model = nn.Sequential(_prune(nn.Conv2d(2, 3, 3)), nn.ReLU(), nn.Flatten(),
                          _prune(nn.Linear(3 * 4 * 4, 8), 0.3))
    path = tmp_path / "m.safetensors"
    save_sparse(to_sparse(model, 0.5), path)
    return model, path


def _resign(path, tensors, meta):
    from safetensors.torch import save_file

    from slimkit.fileio import CHECKSUM_KEY, digest_tensors

    meta = {**meta, CHECKSUM_KEY: digest_tensors(tensors, meta)}
    save_file(tensors, str(path), metadata=meta)


def _contents(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())  # noqa: SIM118


def test_flipped_value_bit_is_refused_by_the_checksum(tmp_path):
    from slimkit.errors import FormatError

    model, path = _saved(tmp_path)
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0x04
    path.write_bytes(bytes(blob))
    with pytest.raises(FormatError, match="checksum"):
        load_sparse(path, model)


@pytest.mark.parametrize("damage,match", [
    ("col_out_of_range", "column indices outside"),
    ("crow_decreasing", "row pointers"),
    ("unsorted_cols", "increase within each row"),
    ("bad_kind", "kind must be"),
    ("extra_key", "unexpected \\['x'\\]"),
    ("nan_value", "NaN"),
    ("index_dtype", "index dtypes"),
])
def test_csr_fields_are_validated_behind_the_checksum(tmp_path, damage, match):
    import json

    from slimkit.errors import FormatError

    model, path = _saved(tmp_path)
    t, m = _contents(path)
    layers = json.loads(m["sparse_layers"])
    if damage == "col_out_of_range":
        t["3.col_indices"] = t["3.col_indices"].clone()
        t["3.col_indices"][0] = 48
    elif damage == "crow_decreasing":
        t["3.crow_indices"] = t["3.crow_indices"].clone()
        t["3.crow_indices"][1] = t["3.crow_indices"][2] + 1
    elif damage == "unsorted_cols":
        row = t["3.crow_indices"]
        r = next(i for i in range(8) if row[i + 1] - row[i] >= 2)
        c = t["3.col_indices"].clone()
        c[row[r]], c[row[r] + 1] = c[row[r] + 1].clone(), c[row[r]].clone()
        t["3.col_indices"] = c
    elif damage == "bad_kind":
        layers["3"]["kind"] = "conv3d"
    elif damage == "extra_key":
        layers["3"]["x"] = 1
    elif damage == "nan_value":
        t["3.values"] = t["3.values"].clone()
        t["3.values"][0] = float("nan")
    elif damage == "index_dtype":
        t["3.col_indices"] = t["3.col_indices"].to(torch.int16)
    m["sparse_layers"] = json.dumps(layers)
    _resign(path, t, m)
    with pytest.raises(FormatError, match=match):
        load_sparse(path, model)


def test_wrong_model_and_missing_file(tmp_path):
    model, path = _saved(tmp_path)
    other = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 9))
    with pytest.raises(UserError, match="shape"):
        load_sparse(path, other)
    with pytest.raises(FileNotFoundError):
        load_sparse(tmp_path / "none.safetensors", model)
    with pytest.raises(UserError, match="none.safetensors"):
        load_sparse(tmp_path / "none.safetensors", model)


def test_a_sparse_skeleton_is_refused_and_a_legacy_file_loads(tmp_path):
    from safetensors.torch import save_file

    model, path = _saved(tmp_path)
    with pytest.raises(UserError, match="dense architecture"):
        load_sparse(path, to_sparse(model, 0.5))
    x = torch.randn(2, 2, 6, 6)
    t, m = _contents(path)
    m.pop("sha256")
    m["format"] = "slimkit-sparse-csr/1"
    save_file(t, str(tmp_path / "old.safetensors"), metadata=m)
    with pytest.warns(UserWarning, match="no checksum"):
        back = load_sparse(tmp_path / "old.safetensors", model)
    torch.testing.assert_close(back(x), model(x), atol=1e-5, rtol=1e-5)
