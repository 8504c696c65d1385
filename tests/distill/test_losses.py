import math

import pytest
import torch
import torch.nn.functional as F

from slimkit.distill import (
    LOSSES,
    at_loss,
    attention_map,
    fsp_loss,
    fsp_matrix,
    kd_loss,
    mmd_poly,
    nst_loss,
    similarity_matrix,
    sp_loss,
)


def test_kd_loss_matches_hand_formula():
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    y = torch.tensor([1, 2])
    T, alpha = 2.0, 0.7
    kl = 0.0
    for i in range(2):
        pt = [math.exp(v / T) for v in t[i].tolist()]
        ps = [math.exp(v / T) for v in s[i].tolist()]
        pt = [v / sum(pt) for v in pt]
        ps = [v / sum(ps) for v in ps]
        kl += sum(a * math.log(a / b) for a, b in zip(pt, ps))
    kl /= 2
    ce = 0.0
    for i in range(2):
        e = [math.exp(v) for v in s[i].tolist()]
        ce += -math.log(e[y[i]] / sum(e))
    ce /= 2
    want = alpha * T * T * kl + (1 - alpha) * ce
    assert kd_loss(s, t, y, T=T, alpha=alpha).item() == pytest.approx(want, rel=1e-5)
    assert kd_loss(t, t, y, T=T, alpha=1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_attention_map_sums_powered_channels_and_normalises():
    f = torch.zeros(1, 2, 2, 2)
    f[0, 0] = torch.tensor([[1.0, -2.0], [0.0, 0.0]])
    f[0, 1] = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    q = torch.tensor([1.0, 5.0, 4.0, 0.0])  # sum_c a^2 per position
    assert torch.allclose(attention_map(f), (q / q.norm())[None])
    assert attention_map(f, p=1).squeeze().tolist() == pytest.approx(
        (torch.tensor([1.0, 3, 2, 0]) / 14**0.5).tolist()
    )
    assert at_loss([f], [3.0 * f]).item() == pytest.approx(0.0, abs=1e-7)  # scale invariant
    g = torch.zeros(1, 1, 2, 2)
    g[0, 0, 0, 0] = 1.0  # map e_0
    want = ((q / q.norm() - torch.tensor([1.0, 0, 0, 0])) ** 2).mean().item()
    assert at_loss([f], [g]).item() == pytest.approx(want)


def test_fsp_matrix_shape_and_value():
    f1 = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    f2 = torch.ones(2, 4, 2, 2)
    g = fsp_matrix(f1, f2)
    assert g.shape == (2, 3, 4)
    assert g[0, 1, 2].item() == pytest.approx((4 + 5 + 6 + 7) / 4)
    assert g[1, 2, 0].item() == pytest.approx((20 + 21 + 22 + 23) / 4)
    fs = [torch.randn(2, 3, 4, 4), torch.randn(2, 4, 4, 4)]
    assert fsp_loss(fs, fs).item() == 0.0
    ft = [fs[0], fs[1] + 1.0]
    gs, gt = fsp_matrix(*fs), fsp_matrix(*ft)
    assert fsp_loss(fs, ft).item() == pytest.approx(((gs - gt) ** 2).mean().item())
    with pytest.raises(ValueError, match="channel counts"):
        fsp_loss(fs, [fs[0], torch.randn(2, 5, 4, 4)])


def test_similarity_preserving_on_crafted_batch():
    # two orthogonal samples and a copy of the first: G = [[1,0,1],[0,1,0],[1,0,1]] before norm
    fs = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    g = similarity_matrix(fs)
    r = 1 / math.sqrt(2)
    assert torch.allclose(g, torch.tensor([[r, 0, r], [0, 1, 0], [r, 0, r]]))
    ft = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])  # all alike: rows 1/sqrt(3)
    want = ((g - torch.full((3, 3), 1 / math.sqrt(3))) ** 2).sum().item() / 9
    assert sp_loss([fs], [ft]).item() == pytest.approx(want)
    assert sp_loss([fs], [fs * 5]).item() == pytest.approx(0.0, abs=1e-7)


def test_mmd_zero_for_identical_positive_otherwise():
    x = torch.randn(2, 5, 6)
    assert torch.allclose(mmd_poly(x, x.clone()), torch.zeros(2), atol=1e-5)
    # hand value: one sample each in R^2, k = (a.b)^2: 1 + 1 - 2 * 0 for orthogonal unit vectors
    a, b = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 1.0]]])
    assert mmd_poly(a, b).item() == pytest.approx(2.0)
    f = torch.rand(3, 4, 3, 3)
    assert nst_loss([f], [f * 2.0]).item() == pytest.approx(0.0, abs=1e-5)  # normalised maps
    assert nst_loss([f], [torch.rand(3, 6, 3, 3) ** 4]).item() > 1e-4


def test_losses_pool_mismatched_spatial_sizes():
    fs, ft = torch.rand(2, 3, 4, 4), torch.rand(2, 5, 8, 8)
    pooled = F.adaptive_avg_pool2d(ft, (4, 4))
    assert at_loss([fs], [ft]).item() == pytest.approx(at_loss([fs], [pooled]).item())
    assert nst_loss([fs], [ft]).item() == pytest.approx(nst_loss([fs], [pooled]).item())


def test_registry_lists_every_survey_loss():
    assert LOSSES.names() == ["adversarial", "at", "fsp", "kd", "nst", "sp"]
    with pytest.raises(KeyError, match="known: adversarial, at"):
        LOSSES.get("hint")
