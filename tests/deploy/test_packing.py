import numpy as np
import pytest
import torch

from slimkit.deploy.packing import pack_bits, packed_nbytes, unpack_bits
from slimkit.errors import UserError


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("n", [0, 1, 7, 13, 101])
def test_round_trip_and_size(bits, n):
    g = torch.Generator().manual_seed(bits * 100 + n)
    codes = torch.randint(0, 2**bits, (n,), generator=g)
    packed = pack_bits(codes, bits)
    assert packed.dtype == torch.uint8
    assert packed.numel() == packed_nbytes(n, bits) == -(-n * bits // 8)
    assert torch.equal(unpack_bits(packed, bits, n), codes)


def test_layout_matches_numpy_packbits():
    # independent reference: numpy's little-endian bit packing of the LSB-first bit stream
    codes = torch.tensor([5, 0, 7, 3, 1, 6, 2])
    bits = 3
    stream = np.array([[(c >> k) & 1 for k in range(bits)] for c in codes.tolist()]).ravel()
    ref = np.packbits(stream.astype(np.uint8), bitorder="little")
    assert pack_bits(codes, bits).tolist() == ref.tolist()


def test_two_nibbles_per_byte():
    assert pack_bits(torch.tensor([0xA, 0x3]), 4).tolist() == [0x3A]


@pytest.mark.parametrize("bits", [0, 9, 2.0])
def test_bad_bits(bits):
    with pytest.raises(UserError, match="bits"):
        pack_bits(torch.tensor([0]), bits)


def test_out_of_range_codes_and_short_stream():
    with pytest.raises(UserError, match="range"):
        pack_bits(torch.tensor([4]), 2)
    with pytest.raises(UserError, match="too short"):
        unpack_bits(torch.zeros(1, dtype=torch.uint8), 4, 3)


def test_strict_unpack_wants_exact_length_and_zero_padding():
    packed = pack_bits(torch.tensor([1, 2, 3]), 3)           # 9 bits: 2 bytes, 7 padding bits
    assert unpack_bits(packed, 3, 3, strict=True).tolist() == [1, 2, 3]
    longer = torch.cat([packed, torch.zeros(1, dtype=torch.uint8)])
    assert unpack_bits(longer, 3, 3).tolist() == [1, 2, 3]
    with pytest.raises(UserError, match="expected 2"):
        unpack_bits(longer, 3, 3, strict=True)
    dirty = packed.clone()
    dirty[1] |= 0x80
    assert unpack_bits(dirty, 3, 3).tolist() == [1, 2, 3]
    with pytest.raises(UserError, match="padding"):
        unpack_bits(dirty, 3, 3, strict=True)
    with pytest.raises(UserError, match="n must be an int"):
        unpack_bits(packed, 3, 3.0)
