import io
import os
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from slimkit import data
from slimkit.data import DataError
from slimkit.data._safe_pickle import safe_loads

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def batch_bytes(images: np.ndarray, labels, key=b"labels", protocol=4) -> bytes:
    return pickle.dumps({b"batch_label": b"x", key: [int(v) for v in labels], b"data": images.reshape(len(images), -1),
                         b"filenames": [b"f.png"] * len(images)}, protocol=protocol)


def make_batches(root, n=4, labels=None):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    arrays = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, 10, n) if labels is None else labels
        (folder / name).write_bytes(batch_bytes(x, y))
        arrays[name] = (x, np.asarray(y))
    return arrays


def test_pickle_batches(tmp_path):
    arrays = make_batches(tmp_path)
    train = data.load("cifar10", root=tmp_path)
    test = data.load("cifar10", root=tmp_path, split="test")
    assert len(train) == 20 and len(test) == 4
    x, y = arrays["data_batch_2"]
    img, label = train[4 + 1]  # second item of the second batch
    mean = np.array(train.mean)[:, None, None]
    std = np.array(train.std)[:, None, None]
    np.testing.assert_allclose(img.numpy(), (x[1] / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
    assert label == y[1]


class Hostile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_hostile_pickle_refused(tmp_path):
    sentinel = tmp_path / "pwned"
    payload = pickle.dumps({b"data": Hostile(sentinel), b"labels": [0]})
    with pytest.raises(pickle.UnpicklingError, match="refused global (posix|os|nt).system"):
        safe_loads(payload)
    make_batches(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(payload)
    with pytest.raises(DataError, match="data_batch_3.*refused global"):
        data.load("cifar10", root=tmp_path)
    assert not sentinel.exists()
    pickle.loads(payload)  # the payload is live: plain pickle runs it
    assert sentinel.exists()


def test_eval_and_classes_refused():
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        safe_loads(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(pickle.UnpicklingError, match="collections.OrderedDict"):
        safe_loads(pickle.dumps(__import__("collections").OrderedDict(a=1)))


def test_safe_loads_plain_data_and_arrays():
    obj = {"a": [1, 2.5, "s", b"b", (3, None)], "x": np.arange(6, dtype=np.uint8).reshape(2, 3)}
    got = safe_loads(pickle.dumps(obj, protocol=4))
    assert got["a"] == obj["a"]
    np.testing.assert_array_equal(got["x"], obj["x"])


def test_pickle_label_out_of_range(tmp_path):
    make_batches(tmp_path, n=2, labels=[3, 10])
    with pytest.raises(DataError, match="data_batch_1: label out of range"):
        data.load("cifar10", root=tmp_path)


def test_official_pickle_archive(tmp_path):
    arrays = make_batches(tmp_path)
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    test = data.load("cifar10", root=tmp_path / "cifar-10-python.tar.gz", split="test")
    np.testing.assert_array_equal(test.images.numpy(), arrays["test_batch"][0])


def png_bytes(arr_chw: np.ndarray, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr_chw.transpose(1, 2, 0)).save(buf, format=fmt)
    return buf.getvalue()


def make_tree(root, classes=CLASSES, fmt="PNG"):
    rng = np.random.default_rng(2)
    ramp = np.linspace(0, 60, 32)[None, None, :]  # smooth images, so JPEG stays close
    truth = {}
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            x = (rng.integers(0, 190, (3, 1, 1)) + ramp + np.zeros((3, 32, 32))).astype(np.uint8)
            (root / split / c / f"0001.{fmt.lower()}").write_bytes(png_bytes(x, fmt))
            truth[(split, c)] = x
    return truth


def test_image_folder_tree_and_cache(tmp_path, monkeypatch, capsys):
    truth = make_tree(tmp_path / "tree")
    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path / "cache"))
    ds = data.load("cifar10", root=tmp_path / "tree", split="test")
    assert len(ds) == 10 and ds.targets.tolist() == list(range(10))
    np.testing.assert_array_equal(ds.images[3].numpy(), truth[("test", "cat")])  # PNG is lossless
    assert not any(p.suffix == ".npy" for p in (tmp_path / "tree").rglob("*"))  # data untouched
    cached = list((tmp_path / "cache").glob("*.npy"))
    assert len(cached) == 2  # images + labels of the split read
    assert f"in {tmp_path / 'cache'}" in capsys.readouterr().err  # the user is told where
    again = data.load("cifar10", root=tmp_path / "tree", split="test")
    np.testing.assert_array_equal(again.images.numpy(), ds.images.numpy())


def test_tar_gz_jpeg_and_read_only_cache(tmp_path, monkeypatch):
    truth = make_tree(tmp_path / "src", fmt="JPEG")
    ro = tmp_path / "ro"
    ro.mkdir()
    with tarfile.open(ro / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "train", arcname="train")
        tar.add(tmp_path / "src" / "test", arcname="test")
    ro.chmod(0o555)
    cache = tmp_path / "cache"
    monkeypatch.setenv("SLIMKIT_CACHE", str(cache))
    try:
        train = data.load("cifar10", root=ro)
        test = data.load("cifar10", root=ro, split="test")
    finally:
        ro.chmod(0o755)
    assert not (ro / ".slimkit-cache").exists()
    assert len(list(cache.glob("cifar10-*.npy"))) == 4  # both splits decoded in one pass
    assert len(train) == len(test) == 10 and train.targets.tolist() == list(range(10))
    err = np.abs(train.images[9].numpy().astype(int) - truth[("train", "truck")].astype(int)).mean()
    assert 0 < err < 4  # JPEG is lossy: close, not equal
    for p in cache.glob("*.npy"):
        np.load(p, allow_pickle=False)


def test_wrong_archive_layout(tmp_path):
    p = tmp_path / "flat.tar.gz"
    with tarfile.open(p, "w:gz") as tar:
        info = tarfile.TarInfo("images/cat_0001.png")
        raw = png_bytes(np.zeros((3, 32, 32), np.uint8))
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    with pytest.raises(DataError, match="flat.tar.gz: wrong archive layout"):
        data.load("cifar10", root=p)


def test_tree_with_extra_class_is_label_out_of_range(tmp_path):
    make_tree(tmp_path, classes=CLASSES + ["zebra"])
    with pytest.raises(DataError, match="needs 10 class folders.*found 11.*out of range"):
        data.load("cifar10", root=tmp_path)


def test_no_data_found(tmp_path):
    with pytest.raises(DataError, match="no cifar10 data found"):
        data.load("cifar10", root=tmp_path)
    with pytest.raises(DataError, match="pass root"):
        data.load("cifar10")


def test_wrong_image_size(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "test" / "dog" / "0001.png").write_bytes(png_bytes(np.zeros((3, 16, 16), np.uint8)))
    with pytest.raises(DataError, match="dog/0001.png: expected a 32x32 image"):
        data.load("cifar10", root=tmp_path, split="test")


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    x = np.random.default_rng(0).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    for name in ("train", "test"):
        (folder / name).write_bytes(batch_bytes(x, [0, 57, 99], key=b"fine_labels"))
    ds = data.load("cifar100", root=tmp_path, split="test")
    assert ds.targets.tolist() == [0, 57, 99] and ds.num_classes == 100
    (folder / "train").write_bytes(batch_bytes(x, [0, 57, 100], key=b"fine_labels"))
    with pytest.raises(DataError, match="cifar-100-python/train: label out of range \\[0, 100\\)"):
        data.load("cifar100", root=tmp_path)


def test_slimkit_data_env_is_the_default_root(tmp_path, monkeypatch):
    make_batches(tmp_path, n=2)
    monkeypatch.setenv("SLIMKIT_DATA", str(tmp_path))
    assert len(data.load("cifar10", split="test")) == 2
