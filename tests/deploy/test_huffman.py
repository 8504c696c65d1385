import heapq
import math

import pytest
import torch

from slimkit.deploy.huffman import canonical_codes, huffman_decode, huffman_encode
from slimkit.errors import UserError


def _optimal_cost(counts):
    # independent reference: the optimal total length is the sum of all merge weights
    heap = [c for c in counts if c > 0]
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        cost += a + b
        heapq.heappush(heap, a + b)
    return cost


@pytest.mark.parametrize("n,alphabet", [(1, 4), (5, 1), (777, 16), (3000, 256)])
def test_round_trip_and_optimal_length(n, alphabet):
    g = torch.Generator().manual_seed(n)
    probs = torch.rand(alphabet, generator=g) ** 4 + 1e-3        # skewed distribution
    s = torch.multinomial(probs, n, replacement=True, generator=g)
    st = huffman_encode(s, alphabet)
    assert torch.equal(huffman_decode(st.lengths, st.data, n), s)
    counts = torch.bincount(s, minlength=alphabet).tolist()
    assert st.data.numel() == math.ceil(st.nbits / 8)
    if sum(c > 0 for c in counts) > 1:
        assert st.nbits == _optimal_cost(counts)
        p = torch.tensor([c / n for c in counts if c])
        entropy = float(-(p * p.log2()).sum())
        assert entropy * n <= st.nbits < (entropy + 1) * n


def test_canonical_codes_prefix_free_and_by_hand():
    codes = canonical_codes([2, 1, 3, 3])
    assert codes == {1: (0b0, 1), 0: (0b10, 2), 2: (0b110, 3), 3: (0b111, 3)}
    words = [format(c, f"0{k}b") for c, k in codes.values()]
    assert not any(a != b and b.startswith(a) for a in words for b in words)


def test_corrupt_streams_raise():
    st = huffman_encode(torch.tensor([0, 1, 2, 2, 3, 3, 3, 3]), 4)
    with pytest.raises(UserError, match="ends before"):
        huffman_decode(st.lengths, st.data[:1], 8)
    with pytest.raises(UserError, match="Kraft"):
        huffman_decode(torch.tensor([1, 1, 1], dtype=torch.uint8), st.data, 3)
    with pytest.raises(UserError, match="matches no code"):
        # lengths (1, 2): codes 0 and 10; the pattern 11 is unused
        huffman_decode(torch.tensor([1, 2], dtype=torch.uint8), torch.tensor([0xC0],
                       dtype=torch.uint8), 1)
    with pytest.raises(UserError, match="symbols must lie"):
        huffman_encode(torch.tensor([5]), 4)


def test_strict_decode_refuses_trailing_bits_and_bytes():
    st = huffman_encode(torch.tensor([0, 0, 0, 1]), 2)      # codes 0 and 1: 4 bits, 1 byte
    assert huffman_decode(st.lengths, st.data, 4, strict=True).tolist() == [0, 0, 0, 1]
    extra = torch.cat([st.data, torch.zeros(1, dtype=torch.uint8)])
    assert huffman_decode(st.lengths, extra, 4).tolist() == [0, 0, 0, 1]   # lenient default
    with pytest.raises(UserError, match="bits left"):
        huffman_decode(st.lengths, extra, 4, strict=True)
    dirty = st.data.clone()
    dirty[0] |= 0x01                                          # a padding bit set
    with pytest.raises(UserError, match="bits left"):
        huffman_decode(st.lengths, dirty, 4, strict=True)
    with pytest.raises(UserError, match="uint8"):
        huffman_decode(st.lengths.to(torch.int64), st.data, 4)
