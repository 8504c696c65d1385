import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from torch import nn

from slimkit.errors import UserError
from slimkit.quant.sharing import (
    INITS, SharedWeightConv2d, SharedWeightLinear, kmeans_1d, kmeans_share, shared_layers,
    to_dense,
)


def _net():
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 5 * 5, 6))


@pytest.mark.parametrize("init", ["linear", "density", "random"])
def test_kmeans_matches_sklearn_with_same_init(init):
    w = torch.randn(400, dtype=torch.float64)
    start = INITS.get(init)(w, 8, torch.Generator().manual_seed(1))
    c, labels = kmeans_1d(w, start)
    km = KMeans(n_clusters=8, init=start.numpy()[:, None], n_init=1, algorithm="lloyd",
                tol=0.0, max_iter=300).fit(w.numpy()[:, None])
    np.testing.assert_allclose(np.sort(c.numpy()), np.sort(km.cluster_centers_[:, 0]),
                               rtol=1e-9, atol=1e-9)
    # the labels of ours and sklearn's name the same partition
    np.testing.assert_allclose(c.numpy()[labels.numpy()], km.cluster_centers_[km.labels_, 0],
                               rtol=1e-9, atol=1e-9)


def test_inits_by_hand():
    w = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])
    g = torch.Generator().manual_seed(0)
    assert INITS.get("linear")(w, 3, g).tolist() == [0.0, 2.0, 4.0]
    assert INITS.get("density")(w, 3, g).tolist() == [1.0, 2.0, 3.0]  # CDF at 1/4, 1/2, 3/4
    r = INITS.get("random")(w, 3, g)
    assert len(set(r.tolist())) == 3 and set(r.tolist()) <= set(w.tolist())


def test_forward_uses_codebook_and_equals_dense_reference():
    net = _net().eval()
    shared = kmeans_share(net, bits=2, init="linear")
    conv, fc = shared[0], shared[3]
    assert isinstance(conv, SharedWeightConv2d) and isinstance(fc, SharedWeightLinear)
    assert conv.indices.dtype == torch.uint8 and conv.weight.unique().numel() <= 4
    x = torch.randn(3, 2, 5, 5)
    ref = nn.functional.conv2d(x, conv.centroids[conv.indices.long()].detach(), conv.bias,
                               padding=1)
    torch.testing.assert_close(conv(x), ref)
    torch.testing.assert_close(shared(x), to_dense(shared)(x))
    # every weight went to its nearest centroid
    w = net[3].weight.detach()
    d = (w[..., None] - fc.centroids.detach()).abs()
    assert torch.equal(fc.indices.long(), d.argmin(-1))
    assert net[0].weight.requires_grad and isinstance(net[0], nn.Conv2d)  # input untouched


def test_centroid_gradient_is_sum_of_member_gradients():
    net = _net()
    shared = kmeans_share(net, bits=3, init="density")
    dense = to_dense(shared)
    x = torch.randn(4, 2, 5, 5)
    shared(x).square().sum().backward()
    dense(x).square().sum().backward()
    for sl, dl in [(shared[0], dense[0]), (shared[3], dense[3])]:
        ref = torch.zeros(sl.centroids.numel()).index_add_(
            0, sl.indices.long().reshape(-1), dl.weight.grad.reshape(-1))
        torch.testing.assert_close(sl.centroids.grad, ref)


def test_pruned_zeros_stay_zero_and_storage():
    net = _net()
    with torch.no_grad():
        net[3].weight[net[3].weight.abs() < 0.05] = 0.0
    zeros = net[3].weight == 0
    shared = kmeans_share(net, bits=4, layer_bits={"0": 2})
    fc = shared[3]
    assert fc.zero_code and fc.centroids.numel() == 15
    assert torch.equal(fc.weight == 0, zeros)
    # training the centroids cannot revive a pruned weight
    opt = torch.optim.SGD(shared.parameters(), lr=0.1)
    shared(torch.randn(2, 2, 5, 5)).sum().backward()
    opt.step()
    assert torch.equal(fc.weight == 0, zeros)
    # dense conv: 2-bit codes for 72 weights -> 18 bytes, + 4 centroids + 4 biases
    assert shared[0].index_bits() == 2 and shared[0].storage_bytes() == 18 + 16 + 16
    assert fc.storage_bytes() < 4 * (fc.indices.numel() + 6)


def test_bad_arguments():
    with pytest.raises(UserError, match="bits"):
        kmeans_share(_net(), bits=9)
    with pytest.raises(UserError, match="known: density, linear, random"):
        kmeans_share(_net(), init="kpp")
    with pytest.raises(UserError, match="layer_bits names"):
        kmeans_share(_net(), layer_bits={"nope": 3})
    assert set(shared_layers(kmeans_share(_net(), bits=1))) == {"0", "3"}
