import os
import stat

import pytest
import torch

from slimkit.errors import FormatError, UserError
from slimkit.fileio import (
    CHECKSUM_KEY, atomic_write, check_writable, digest_tensors, digest_tree, parse_safetensors,
    read_safetensors, write_safetensors,
)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_bytes_callable_and_mode_follows_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.bin", b"abc")
        atomic_write(tmp_path / "sub" / "b.bin", lambda f: f.write(b"xyz"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"xyz"
    assert _mode(tmp_path / "a.bin") == 0o640 == _mode(tmp_path / "sub" / "b.bin")
    atomic_write(tmp_path / "c.bin", b"", mode=0o600)
    assert _mode(tmp_path / "c.bin") == 0o600


def test_atomic_write_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write(path, b"old")

    def boom(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, boom)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_two_writers_use_distinct_temporary_files(tmp_path):
    path = tmp_path / "f.bin"
    seen = []

    def inner(f):
        seen.append(f.name)
        atomic_write(path, lambda g: (seen.append(g.name), g.write(b"inner")))
        f.write(b"outer")

    atomic_write(path, inner)
    assert seen[0] != seen[1] and path.read_bytes() == b"outer"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_check_writable_refuses_bad_outputs(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "in.pt").write_text("x")
    assert check_writable(tmp_path / "ok.pt") == tmp_path / "ok.pt"
    cases = [
        (tmp_path, "is a folder"),
        (tmp_path / "file" / "out.pt", "under .*file, which is a file"),
        (tmp_path / "file" / "deeper" / "out.pt", "under .*file, which is a file"),
        (tmp_path / "missing" / "out.pt", "does not exist"),
        (tmp_path / "in.pt", "input file"),
        ("", "not a file path"),
    ]
    for path, match in cases:
        with pytest.raises(UserError, match=match) as e:
            check_writable(path, "--out", inputs=[tmp_path / "in.pt"])
        assert str(e.value).startswith("--out")
    assert check_writable(tmp_path / "a" / "b" / "o.pt", create_parents=True)
    assert not (tmp_path / "a").exists()                       # nothing created


def test_check_writable_refuses_read_only_folder_and_file(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    (tmp_path / "f.pt").write_text("x")
    os.chmod(tmp_path / "f.pt", 0o444)
    os.chmod(ro, 0o555)
    try:
        with pytest.raises(UserError, match="not writable"):
            check_writable(ro / "o.pt", "--save")
        with pytest.raises(UserError, match="read-only"):
            check_writable(tmp_path / "f.pt")
    finally:
        os.chmod(ro, 0o755)


def test_check_writable_read_only_folder_by_access(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda p, mode: False)  # as a non-root user would see it
    with pytest.raises(UserError, match="--out .*not writable"):
        check_writable(tmp_path / "o.pt")


def test_digests_cover_names_shapes_bytes_and_metadata():
    a, b = torch.arange(6, dtype=torch.float32), torch.ones(6)
    base = digest_tensors({"a": a, "b": b}, {"format": "x"})
    assert base == digest_tensors({"b": b, "a": a}, {"format": "x", CHECKSUM_KEY: "ignored"})
    changed = [
        digest_tensors({"a": b, "b": a}, {"format": "x"}),                  # swapped
        digest_tensors({"a": a.reshape(2, 3), "b": b}, {"format": "x"}),    # reshaped
        digest_tensors({"a": a.double(), "b": b}, {"format": "x"}),         # dtype
        digest_tensors({"a": a, "c": b}, {"format": "x"}),                  # renamed
        digest_tensors({"a": a, "b": b}, {"format": "y"}),                  # metadata
    ]
    assert len({base, *changed}) == 6
    assert digest_tree({"x": [1, 2.0], "t": a}) == digest_tree({"t": a.clone(), "x": (1, 2.0)})
    assert digest_tree({"x": [1, 2]}) != digest_tree({"x": [1, 2.0]})
    assert digest_tree({"x": "1"}) != digest_tree({"x": 1})


def test_safetensors_round_trip_and_strict_header(tmp_path):
    from safetensors.torch import save as st_save

    t = {"w": torch.randn(3, 2), "i": torch.arange(4, dtype=torch.int32),
         "e": torch.zeros(0), "m": torch.tensor([True, False])}
    size = write_safetensors(tmp_path / "f.st", t, {"format": "demo/1"})
    assert size == (tmp_path / "f.st").stat().st_size
    got, meta = read_safetensors(tmp_path / "f.st")
    assert set(meta) == {"format", CHECKSUM_KEY}
    assert all(torch.equal(got[k], v) and got[k].dtype == v.dtype for k, v in t.items())
    blob = st_save({"w": torch.ones(2)})
    n = int.from_bytes(blob[:8], "little")
    bad = {
        "short": blob[:5],
        "length": (10**6).to_bytes(8, "little") + blob[8:],
        "tail": blob + b"\0",
        "dup": (lambda h: len(h).to_bytes(8, "little") + h + blob[8 + n:])(
            b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
            b'"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'),
        "bool": st_save({"m": torch.tensor([True])})[:-1] + b"\x02",
    }
    for name, data in bad.items():
        with pytest.raises(FormatError, match="corrupt|JSON"):
            parse_safetensors(data, name)


def test_check_writable_refuses_a_non_regular_file():
    with pytest.raises(UserError, match="not a regular file"):
        check_writable("/dev/null")
