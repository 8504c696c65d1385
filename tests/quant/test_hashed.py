import pytest
import torch
from torch import nn

from slimkit.errors import UserError
from slimkit.quant.hashed import HashedConv2d, HashedLinear, hash_compress, hash_indices, mix32


def _fmix32(h):                    # plain-Python MurmurHash3 finaliser as the reference
    h &= 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def test_mix32_matches_reference_and_hash_is_balanced():
    x = [0, 1, 2, 99991, 2**32 - 1, 2**31 + 5]
    assert mix32(torch.tensor(x)).tolist() == [_fmix32(v) for v in x]
    bucket, sign = hash_indices(20000, 50, seed=7)
    counts = torch.bincount(bucket, minlength=50).float()
    assert counts.min() > 300 and counts.max() < 500            # expected 400 each
    assert abs(float(sign.mean())) < 0.05 and set(sign.unique().tolist()) == {-1.0, 1.0}
    b2, _ = hash_indices(20000, 50, seed=8)
    assert not torch.equal(bucket, b2)


def test_linear_param_count_and_forward_equals_virtual_matrix():
    layer = HashedLinear(30, 12, compression=1 / 8, seed=3)
    assert layer.weight_real.numel() == layer.k == 45
    assert sum(p.numel() for p in layer.parameters()) == 45 + 12
    w = layer.weight_real.detach()
    v = torch.empty(12, 30)
    b, s = hash_indices(12 * 30, 45, 3)
    for i in range(12):
        for j in range(30):
            v[i, j] = s[i * 30 + j] * w[b[i * 30 + j]]
    x = torch.randn(4, 30)
    layer.bias.data.normal_()
    torch.testing.assert_close(layer(x), x @ v.T + layer.bias)


def test_gradient_is_signed_bucket_sum():
    conv = HashedConv2d(3, 4, 3, padding=1, compression=1 / 4, seed=0)
    x = torch.randn(2, 3, 6, 6)
    v = conv.weight.detach().requires_grad_(True)
    nn.functional.conv2d(x, v, conv.bias, padding=1).square().sum().backward()
    conv(x).square().sum().backward()
    ref = torch.zeros(conv.k).index_add_(0, conv.bucket.reshape(-1),
                                         (v.grad * conv.sign).reshape(-1))
    torch.testing.assert_close(conv.weight_real.grad, ref)


def test_hash_compress_projects_and_counts():
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 64),
                        nn.ReLU(), nn.Linear(64, 10))
    h = hash_compress(net, compression=1 / 64)
    dense_w = sum(m.weight.numel() for m in net.modules() if hasattr(m, "weight"))
    real_w = sum(m.weight_real.numel() for m in h.modules() if hasattr(m, "weight_real"))
    assert abs(real_w - dense_w / 64) <= 3
    assert type(net[3]) is nn.Linear                             # input untouched
    # projection: each real weight is the mean of its signed bucket of the dense weight
    fc = h[3]
    sel = fc.bucket == 5
    torch.testing.assert_close(fc.weight_real[5].detach(),
                               (net[3].weight.detach() * fc.sign)[sel].mean())
    assert fc.storage_bytes() == 4 * (fc.k + 64)
    assert h(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("c", [0, 1.5, -0.1, "1/8"])
def test_bad_compression(c):
    with pytest.raises(UserError, match="compression"):
        HashedLinear(4, 4, compression=c)
