"""Dense bit-level packing of small integer codes into ``uint8`` bytes.

Codes of ``bits`` in 1..8 are laid out little-endian at the bit level: code ``i`` occupies
bits ``[i*bits, (i+1)*bits)`` of the stream, bit 0 of byte 0 being the least significant.
Two 4-bit codes therefore share one byte (the first in the low nibble), eight 1-bit codes
fill a byte, and 3-bit codes straddle byte boundaries. The last byte is zero-padded.

>>> import torch
>>> codes = torch.tensor([1, 2, 3, 15, 0], dtype=torch.uint8)
>>> packed = pack_bits(codes, bits=4)
>>> packed.tolist(), packed_nbytes(5, 4)
([33, 243, 0], 3)
>>> unpack_bits(packed, bits=4, n=5).tolist()
[1, 2, 3, 15, 0]
"""

from __future__ import annotations

import torch
from torch import Tensor

from slimkit.errors import UserError

__all__ = ["packed_nbytes", "pack_bits", "unpack_bits"]


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 8:
        raise UserError(f"bits must be an int in 1..8, got {bits!r}")


def packed_nbytes(n: int, bits: int) -> int:
    """Bytes needed to store ``n`` codes of ``bits`` bits each: ``ceil(n * bits / 8)``."""
    _check_bits(bits)
    if n < 0:
        raise UserError(f"n must be >= 0, got {n}")
    return (n * bits + 7) // 8


def pack_bits(codes: Tensor, bits: int) -> Tensor:
    """Pack integer codes in ``[0, 2**bits)`` (any shape, flattened) into a 1-D uint8 tensor."""
    _check_bits(bits)
    flat = codes.reshape(-1)
    if flat.is_floating_point() or flat.is_complex():
        raise UserError(f"codes must be an integer tensor, got dtype {flat.dtype}")
    n = flat.numel()
    if n == 0:
        return torch.zeros(0, dtype=torch.uint8)
    flat = flat.to(torch.int64)
    lo, hi = int(flat.min()), int(flat.max())
    if lo < 0 or hi >= 1 << bits:
        raise UserError(f"codes must lie in [0, {(1 << bits) - 1}] for {bits} bits, "
                        f"got range [{lo}, {hi}]")
    if bits == 8:
        return flat.to(torch.uint8).clone()
    shifts = torch.arange(bits, dtype=torch.int64)
    stream = ((flat[:, None] >> shifts) & 1).reshape(-1)        # (n*bits,) LSB first
    pad = packed_nbytes(n, bits) * 8 - stream.numel()
    stream = torch.cat([stream, stream.new_zeros(pad)]).reshape(-1, 8)
    weights = 1 << torch.arange(8, dtype=torch.int64)
    return (stream * weights).sum(1).to(torch.uint8)


def unpack_bits(packed: Tensor, bits: int, n: int, *, strict: bool = False) -> Tensor:
    """Inverse of :func:`pack_bits`: the first ``n`` codes as a 1-D int64 tensor.

    With ``strict`` (used when reading files) the stream must be exactly
    ``packed_nbytes(n, bits)`` long and its padding bits zero, as `pack_bits` writes it.
    """
    _check_bits(bits)
    if not isinstance(n, int) or isinstance(n, bool):
        raise UserError(f"n must be an int, got {n!r}")
    if not isinstance(packed, Tensor) or packed.dtype != torch.uint8 or packed.dim() != 1:
        raise UserError(f"packed must be a 1-D uint8 tensor, got "
                        f"{getattr(packed, 'dtype', type(packed).__name__)} "
                        f"with shape {tuple(getattr(packed, 'shape', ()))}")
    need = packed_nbytes(n, bits)
    if packed.numel() < need:
        raise UserError(f"packed stream too short: {packed.numel()} bytes for {n} codes "
                        f"of {bits} bits (need {need})")
    if strict:
        if packed.numel() != need:
            raise UserError(f"packed stream has {packed.numel()} bytes, expected {need} for "
                            f"{n} codes of {bits} bits")
        used = (n * bits) % 8
        if used and int(packed[-1]) >> used:
            raise UserError("packed stream has non-zero padding bits")
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    data = packed[:need].to(torch.int64)
    if bits == 8:
        return data.clone()
    stream = ((data[:, None] >> torch.arange(8, dtype=torch.int64)) & 1).reshape(-1)
    stream = stream[: n * bits].reshape(n, bits)
    return (stream << torch.arange(bits, dtype=torch.int64)).sum(1)
