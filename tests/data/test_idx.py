import gzip
import struct

import numpy as np
import pytest

from slimkit import data
from slimkit.data import DataError
from slimkit.data.idx import read_idx, write_idx


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    """Hand-built IDX: 0x0000, type code, ndim, big-endian dims, big-endian data."""
    head = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def make_mnist_dir(root, n_train=12, n_test=5, gz=True, labels=None):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8) if labels is None else np.asarray(labels, np.uint8)
        for kind, arr, nd in (("images", x, 3), ("labels", y, 1)):
            body = idx_bytes(arr)
            (root / f"{prefix}-{kind}-idx{nd}-ubyte{suffix}").write_bytes(gzip.compress(body) if gz else body)
        out[prefix] = (x, y)
    return out


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_raw_and_gzip(tmp_path, gz):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    body = idx_bytes(arr)
    p = tmp_path / ("a.idx.gz" if gz else "a.idx")
    p.write_bytes(gzip.compress(body) if gz else body)
    got = read_idx(p)
    assert got.dtype == np.uint8 and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, arr)


def test_read_idx_int32_big_endian(tmp_path):
    arr = np.array([1, -2, 70000], dtype=np.int32)
    (tmp_path / "a").write_bytes(bytes([0, 0, 0x0C, 1, 0, 0, 0, 3]) + arr.astype(">i4").tobytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), arr)


def test_write_idx_matches_hand_built(tmp_path):
    arr = np.array([[1.5, -2.0]], dtype=np.float32)
    write_idx(tmp_path / "w.idx", arr)
    assert (tmp_path / "w.idx").read_bytes() == idx_bytes(arr, code=0x0D)
    write_idx(tmp_path / "w.idx.gz", arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "w.idx.gz"), arr)


def test_bad_magic_names_file(tmp_path):
    p = tmp_path / "bad-images-idx3-ubyte"
    p.write_bytes(b"\x12\x34\x08\x01" + b"\x00\x00\x00\x01" + b"\x00")
    with pytest.raises(DataError, match="bad-images-idx3-ubyte.*not an IDX"):
        read_idx(p)


@pytest.mark.parametrize("cut", [2, 9, 30])
def test_truncated(tmp_path, cut):
    body = idx_bytes(np.zeros((2, 4, 4), np.uint8))
    p = tmp_path / "t.idx"
    p.write_bytes(body[: len(body) - cut] if cut != 2 else body[:2])
    with pytest.raises(DataError, match="t.idx"):
        read_idx(p)


def test_dims_do_not_match_size(tmp_path):
    p = tmp_path / "long.idx"
    p.write_bytes(idx_bytes(np.zeros((2, 3), np.uint8)) + b"\x00")
    with pytest.raises(DataError, match=r"long.idx: IDX dims \(2, 3\) need 6 data bytes but the file has 7"):
        read_idx(p)


def test_truncated_gzip(tmp_path):
    p = tmp_path / "g.idx.gz"
    p.write_bytes(gzip.compress(idx_bytes(np.zeros((50, 50), np.uint8)))[:-12])
    with pytest.raises(DataError, match="g.idx.gz"):
        read_idx(p)


def test_missing_file_names_file(tmp_path):
    with pytest.raises(DataError, match="nope.idx: file not found"):
        read_idx(tmp_path / "nope.idx")


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_load_mnist_layout(tmp_path, gz, name):
    arrays = make_mnist_dir(tmp_path, gz=gz)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = data.load(name, root=tmp_path, split=split)
        x, y = arrays[prefix]
        assert len(ds) == len(y)
        img, label = ds[3]
        mean, std = ds.mean[0], ds.std[0]
        np.testing.assert_allclose(img[0].numpy(), (x[3] / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
        assert label == int(y[3]) and isinstance(label, int)


def test_fashion_constants(tmp_path):
    make_mnist_dir(tmp_path)
    ds = data.load("fashion-mnist", root=tmp_path)
    assert ds.mean == (0.2860,) and ds.std == (0.3530,)
    assert data.load("mnist", root=tmp_path).mean == (0.1307,)


def test_label_out_of_range(tmp_path):
    make_mnist_dir(tmp_path, n_train=3, n_test=3, labels=[0, 10, 2])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: label out of range"):
        data.load("mnist", root=tmp_path)


def test_count_mismatch(tmp_path):
    make_mnist_dir(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(DataError, match="4 labels for 12 images"):
        data.load("mnist", root=tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: file not found"):
        data.load("mnist", root=tmp_path)


def test_fashion_without_root_explains(monkeypatch, tmp_path):
    from slimkit.data import idx

    monkeypatch.setattr(idx, "FASHION_DEFAULT_ROOT", tmp_path / "absent")
    with pytest.raises(DataError, match="dataset-fashion-mnist.*root"):
        data.load("fashion-mnist")
