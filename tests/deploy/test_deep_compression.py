import io
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from slimkit.deploy.deep_compression import (
    decode_positions, encode_positions, load_compressed, save_compressed,
)
from slimkit.errors import FormatError, UserError
from slimkit.fileio import CHECKSUM_KEY, digest_tensors
from slimkit.quant.sharing import kmeans_share


def _net():
    return nn.Sequential(nn.Conv2d(1, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 6 * 6, 40), nn.ReLU(), nn.Linear(40, 5))


def _pruned_shared(bits=4):
    net = _net()
    with torch.no_grad():
        for m in (net[0], net[4], net[6]):
            thr = m.weight.abs().flatten().kthvalue(int(0.8 * m.weight.numel())).values
            m.weight[m.weight.abs() <= thr] = 0.0
        net[1].running_mean.uniform_(-0.1, 0.1)
    return net.eval(), kmeans_share(net, bits=bits, layer_bits={"0": 8}).eval()


def test_relative_index_by_hand_with_fillers():
    # 3-bit gaps (span 8), as in the paper's Figure 2: a run of 9 zeros needs one filler
    codes = torch.tensor([0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1])
    gaps, entries = encode_positions(codes, pos_bits=3)
    assert gaps.tolist() == [1, 7, 2, 0]
    assert entries.tolist() == [2, 0, 3, 1]
    assert torch.equal(decode_positions(gaps, entries, codes.numel()), codes)


@pytest.mark.parametrize("huffman", [True, False])
def test_round_trip_outputs_equal_and_file_small(tmp_path, huffman):
    _, shared = _pruned_shared()
    path = tmp_path / "m.dc"
    size = save_compressed(shared, path, huffman=huffman)
    assert size == path.stat().st_size
    loaded = load_compressed(path, _net().eval())
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(loaded(x), shared(x), rtol=0, atol=0)
    for name in ("0", "4", "6"):
        assert torch.equal(loaded.get_submodule(name).indices,
                           shared.get_submodule(name).indices)
    fp32 = io.BytesIO()
    torch.save(_net().state_dict(), fp32)
    assert size < fp32.getbuffer().nbytes / 2
    layers = json.loads(_metadata(path)["layers"])
    used = [v for info in layers.values() for k, v in info.items() if k.endswith("_huffman")]
    assert any(used) == huffman


def _metadata(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))["__metadata__"]


def test_huffman_only_where_smaller(tmp_path):
    # uniform 2-bit codes: Huffman cannot beat packing once its table is counted
    net = nn.Sequential(nn.Linear(64, 64, bias=False))
    shared = kmeans_share(net, bits=2)
    with torch.no_grad():
        shared[0].indices.copy_(torch.arange(64 * 64).reshape(64, 64) % 4)
    size_h = save_compressed(shared, tmp_path / "h.dc", huffman=True)
    size_p = save_compressed(shared, tmp_path / "p.dc", huffman=False)
    assert size_h == size_p
    assert json.loads(_metadata(tmp_path / "h.dc")["layers"])["0"]["codes_huffman"] is False


def test_dense_layers_round_trip(tmp_path):
    shared = kmeans_share(_net(), bits=3).eval()
    save_compressed(shared, tmp_path / "d.dc", huffman=True)
    loaded = load_compressed(tmp_path / "d.dc", shared)       # a shared skeleton works too
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(loaded(x), shared(x), rtol=0, atol=0)


def test_corrupt_and_hostile_files(tmp_path):
    _, shared = _pruned_shared()
    path = tmp_path / "m.dc"
    save_compressed(shared, path, huffman=False)
    blob = path.read_bytes()
    (tmp_path / "trunc.dc").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "junk.dc").write_bytes(b"\xff" * 64)
    for bad in ("trunc.dc", "junk.dc", "missing.dc"):
        with pytest.raises(UserError):
            load_compressed(tmp_path / bad, _net())

    tensors = load_file(path)
    meta = _metadata(path)

    def rewrite(mutate_t=None, mutate_meta=None, sign=True):
        t, m = dict(tensors), dict(meta)
        if mutate_t:
            mutate_t(t)
        if mutate_meta:
            m = mutate_meta(m)
        if sign:       # a valid checksum, so the field checks behind it are reached
            m[CHECKSUM_KEY] = digest_tensors(t, m)
        save_file(t, tmp_path / "h.dc", metadata=m)
        return tmp_path / "h.dc"

    def big_code(t):            # a 4-bit code that points past the 15+1-entry codebook
        t["6.codebook"] = t["6.codebook"][:3].clone()
    with pytest.raises(FormatError, match="checksum mismatch"):
        load_compressed(rewrite(big_code, sign=False), _net())
    with pytest.raises(FormatError, match="codebook entries"):
        load_compressed(rewrite(big_code), _net())

    def short_codes(t):
        t["4.codes"] = t["4.codes"][:-1].clone()
    with pytest.raises(UserError, match="bytes, expected"):
        load_compressed(rewrite(short_codes), _net())

    def far_gaps(m):
        layers = json.loads(m["layers"])
        layers["4"]["pos_bits"] = 8      # reread 5-bit gaps as 8-bit: runs off the end
        return {**m, "layers": json.dumps(layers)}
    with pytest.raises(UserError, match="corrupt file"):
        load_compressed(rewrite(mutate_meta=far_gaps), _net())

    with pytest.raises(UserError, match="format"):
        load_compressed(rewrite(mutate_meta=lambda m: {**m, "format": "other"}), _net())
    with pytest.raises(UserError, match="shape"):
        load_compressed(path, nn.Sequential(nn.Conv2d(1, 7, 3), nn.BatchNorm2d(6), nn.ReLU(),
                                            nn.Flatten(), nn.Linear(216, 40), nn.ReLU(),
                                            nn.Linear(40, 5)))


def test_positions_past_the_end_raise():
    with pytest.raises(UserError, match="run past"):
        decode_positions(torch.tensor([1, 2]), torch.tensor([1, 1]), 4)


def test_one_flipped_bit_in_the_data_is_refused(tmp_path):
    _, shared = _pruned_shared()
    path = tmp_path / "m.dc"
    save_compressed(shared, path, huffman=True)
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0x10                       # inside the last tensor's bytes
    path.write_bytes(bytes(blob))
    with pytest.raises(FormatError, match="m.dc.*checksum"):
        load_compressed(path, _net())


def test_unknown_layer_key_and_bad_json_are_refused(tmp_path):
    _, shared = _pruned_shared()
    path = tmp_path / "m.dc"
    save_compressed(shared, path, huffman=False)
    tensors, meta = load_file(path), _metadata(path)
    layers = json.loads(meta["layers"])
    layers["4"]["extra"] = 1
    for text, match in ((json.dumps(layers), "unexpected \\['extra'\\]"),
                        (meta["layers"][:-1], "not valid JSON")):
        m = {**meta, "layers": text}
        m[CHECKSUM_KEY] = digest_tensors(tensors, m)
        save_file(tensors, tmp_path / "x.dc", metadata=m)
        with pytest.raises(FormatError, match=match):
            load_compressed(tmp_path / "x.dc", _net())


def test_legacy_file_without_checksum_loads_with_a_warning(tmp_path):
    _, shared = _pruned_shared()
    path = tmp_path / "m.dc"
    save_compressed(shared, path, huffman=False)
    tensors, meta = load_file(path), _metadata(path)
    legacy = {"format": "slimkit.deep_compression/1", "layers": meta["layers"]}
    save_file(tensors, tmp_path / "old.dc", metadata=legacy)
    with pytest.warns(UserWarning, match="no checksum"):
        loaded = load_compressed(tmp_path / "old.dc", _net().eval())
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(loaded(x), shared(x), rtol=0, atol=0)
    save_file(tensors, tmp_path / "nosum.dc", metadata={**legacy, "format": meta["format"]})
    with pytest.raises(FormatError, match="missing \\['sha256'\\]"):
        load_compressed(tmp_path / "nosum.dc", _net())
