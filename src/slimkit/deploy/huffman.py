"""Canonical Huffman coding of small-integer streams (Deep Compression stage 3).

Huffman, "A Method for the Construction of Minimum-Redundancy Codes", Proc. IRE 1952; used on
the quantized weights and sparse indices by Han et al., "Deep Compression", ICLR 2016.
The code is *canonical*: only the code length of each symbol is stored, and codes are
assigned in order of (length, symbol), so the decoder rebuilds them exactly.

>>> import torch
>>> s = torch.tensor([0, 0, 0, 0, 1, 1, 2, 3])
>>> stream = huffman_encode(s, alphabet_size=4)
>>> stream.lengths.tolist(), stream.nbits
([1, 2, 3, 3], 14)
>>> huffman_decode(stream.lengths, stream.data, n=8).tolist()
[0, 0, 0, 0, 1, 1, 2, 3]
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import torch
from torch import Tensor

from slimkit.errors import UserError

__all__ = ["HuffmanStream", "code_lengths", "canonical_codes", "huffman_encode",
           "huffman_decode"]

MAX_LEN = 57          # code lengths beyond this cannot arise from < 2**40 symbols


@dataclass(frozen=True)
class HuffmanStream:
    """``lengths`` (alphabet,) uint8 code lengths (0 = unused), ``data`` uint8 bytes
    (MSB-first bit stream, zero-padded), ``nbits`` valid bits, ``n`` symbols."""

    lengths: Tensor
    data: Tensor
    nbits: int
    n: int


def code_lengths(counts: list[int]) -> list[int]:
    """Huffman code length per symbol from its count (0 for symbols never seen)."""
    used = [(c, s) for s, c in enumerate(counts) if c > 0]
    lengths = [0] * len(counts)
    if len(used) == 1:
        lengths[used[0][1]] = 1
        return lengths
    # heap of (count, tiebreak, symbols in the subtree)
    heap = [(c, s, [s]) for c, s in used]
    heapq.heapify(heap)
    tie = len(counts)
    while len(heap) > 1:
        c1, _, a = heapq.heappop(heap)
        c2, _, b = heapq.heappop(heap)
        for s in a + b:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, tie, a + b))
        tie += 1
    return lengths


def canonical_codes(lengths: list[int]) -> dict[int, tuple[int, int]]:
    """symbol -> (code, length) of the canonical code with these lengths."""
    order = sorted((length, s) for s, length in enumerate(lengths) if length > 0)
    codes: dict[int, tuple[int, int]] = {}
    code, prev = 0, 0
    for length, s in order:
        code <<= length - prev
        codes[s] = (code, length)
        code += 1
        prev = length
    return codes


def _check_lengths(lengths: list[int]) -> None:
    if any(length > MAX_LEN for length in lengths):
        raise UserError(f"corrupt Huffman table: code length above {MAX_LEN}")
    kraft = sum(2.0 ** -length for length in lengths if length > 0)
    if kraft > 1.0 + 1e-12:
        raise UserError(f"corrupt Huffman table: code lengths violate Kraft (sum {kraft:.3f})")


def huffman_encode(symbols: Tensor, alphabet_size: int) -> HuffmanStream:
    """Encode a 1-D stream of integers in ``[0, alphabet_size)``."""
    s = symbols.reshape(-1).to(torch.int64)
    if s.numel() and (int(s.min()) < 0 or int(s.max()) >= alphabet_size):
        raise UserError(f"symbols must lie in [0, {alphabet_size}), got range "
                        f"[{int(s.min())}, {int(s.max())}]")
    counts = torch.bincount(s, minlength=alphabet_size).tolist()
    lengths = code_lengths(counts)
    codes = canonical_codes(lengths)
    words = {sym: format(c, f"0{n}b") for sym, (c, n) in codes.items()}
    bits = "".join(words[v] for v in s.tolist())
    nbits = len(bits)
    nbytes = (nbits + 7) // 8
    data = int(bits + "0" * (nbytes * 8 - nbits), 2).to_bytes(nbytes, "big") if nbits else b""
    return HuffmanStream(torch.tensor(lengths, dtype=torch.uint8),
                         torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()
                         if nbytes else torch.zeros(0, dtype=torch.uint8), nbits, s.numel())


def huffman_decode(lengths: Tensor, data: Tensor, n: int, *, strict: bool = False) -> Tensor:
    """Decode ``n`` symbols; a stream that ends early or hits an unused code raises.

    With ``strict`` (used when reading files) the stream must also end where
    `huffman_encode` ends it: fewer than 8 bits left over, all of them zero.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise UserError(f"n must be an int >= 0, got {n!r}")
    for name, t in (("lengths", lengths), ("data", data)):
        if not isinstance(t, Tensor) or t.dtype != torch.uint8 or t.dim() != 1:
            raise UserError(f"Huffman {name} must be a 1-D uint8 tensor, got "
                            f"{getattr(t, 'dtype', type(t).__name__)}")
    lens = [int(v) for v in lengths.tolist()]
    _check_lengths(lens)
    if n == 0:
        if strict and data.numel():
            raise UserError(f"corrupt Huffman stream: {data.numel()} bytes for 0 symbols")
        return torch.zeros(0, dtype=torch.int64)
    codes = canonical_codes(lens)
    if not codes:
        raise UserError("corrupt Huffman table: no symbol has a code")
    lookup = {(length, code): sym for sym, (code, length) in codes.items()}
    max_len = max(length for _, length in codes.values())
    raw = bytes(data.to(torch.uint8).tolist())
    bits = format(int.from_bytes(raw, "big"), f"0{len(raw) * 8}b") if raw else ""
    out = []
    pos, total = 0, len(bits)
    for _ in range(n):
        code = 0
        for length in range(1, max_len + 1):
            if pos >= total:
                raise UserError("corrupt Huffman stream: ends before all symbols were read")
            code = (code << 1) | (bits[pos] == "1")
            pos += 1
            sym = lookup.get((length, code))
            if sym is not None:
                out.append(sym)
                break
        else:
            raise UserError("corrupt Huffman stream: bit pattern matches no code")
    if strict and (total - pos >= 8 or "1" in bits[pos:]):
        raise UserError(f"corrupt Huffman stream: {total - pos} bits left after {n} symbols "
                        "(expected < 8 zero padding bits)")
    return torch.tensor(out, dtype=torch.int64)
