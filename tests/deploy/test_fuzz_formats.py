"""Bounded, seeded fuzz of every compact file format (the full run: benchmarks/fuzz_formats.py).

Each of >= 500 mutations per format must either raise slimkit's own error or load data equal
to the original (possible only when the mutation was a no-op); a re-signed edit (valid
checksum over changed content) may also load as the valid file it is. Nothing else may escape
a loader, and no named check may be bypassed (``unchecked`` counts the loaders' last-resort
guard).
"""

import random

import pytest
import torch

from slimkit._fuzz import FORMATS, KINDS, fuzz_format
from slimkit.deploy.huffman import huffman_decode, huffman_encode
from slimkit.deploy.packing import pack_bits, unpack_bits
from slimkit.errors import UserError

N = 504          # 63 of each of the 8 mutation kinds


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_mutations_raise_slimkit_errors_or_load_unchanged(tmp_path, name):
    c = fuzz_format(FORMATS[name], N, seed=0, workdir=tmp_path)
    assert c.n == N and set(c.by_kind) == set(KINDS)
    assert all(sum(row.values()) == N // len(KINDS) for row in c.by_kind.values())
    assert c.counts["raw"] == 0, c.examples
    assert c.counts["silent"] == 0, c.examples
    assert c.counts["unchecked"] == 0, c.examples
    # the mutations bite: byte-level damage is always refused, and most of the rest too
    for kind in ("truncate", "insert", "delete"):
        assert c.by_kind[kind]["error"] == N // len(KINDS), (kind, c.by_kind[kind])
    assert c.counts["error"] >= 0.9 * N


def test_stream_decoders_only_raise_user_errors():
    rng = random.Random(0)
    g = torch.Generator().manual_seed(0)
    symbols = torch.randint(0, 8, (40,), generator=g)
    st = huffman_encode(symbols, 8)
    packed = pack_bits(symbols, 3)
    for i in range(300):
        lengths = st.lengths.clone()
        data = st.data.clone()
        if i % 3 == 0:
            lengths[rng.randrange(8)] = rng.randrange(256)
        elif i % 3 == 1 and data.numel():
            data[rng.randrange(data.numel())] ^= 1 << rng.randrange(8)
        else:
            data = data[: rng.randrange(data.numel() + 1)]
        try:
            out = huffman_decode(lengths, data, 40, strict=rng.random() < 0.5)
            assert out.shape == (40,) and int(out.min()) >= 0 and int(out.max()) < 8
        except UserError:
            pass
        p = packed.clone()
        if p.numel():
            p[rng.randrange(p.numel())] ^= 1 << rng.randrange(8)
        p = p[: rng.randrange(p.numel() + 2)]
        try:
            out = unpack_bits(p, 3, 40, strict=True)
            assert out.shape == (40,) and int(out.max()) < 8
        except UserError:
            pass
