import math

import numpy as np
import pytest
import torch

from slimkit.quant.core import QScheme
from slimkit.quant.observers import (
    ACIQ_PUBLISHED_GAUSS,
    ACIQ_PUBLISHED_LAPLACE,
    OBSERVERS,
    aciq_alpha,
    aciq_mse,
    kl_threshold_bin,
)


def test_registry_names_and_unknown():
    assert set(OBSERVERS.names()) == {"minmax", "ema_minmax", "percentile", "mse", "kl", "aciq"}
    with pytest.raises(KeyError, match="known: aciq, ema_minmax, kl, minmax, mse, percentile"):
        OBSERVERS.get("median")


@pytest.mark.parametrize("name", ["minmax", "ema_minmax", "percentile", "mse", "kl", "aciq"])
def test_every_observer_gives_valid_qparams_and_errors_when_empty(name):
    obs = OBSERVERS.get(name)(QScheme(bits=8))
    with pytest.raises(ValueError, match="no data"):
        obs.range()
    obs.update(torch.randn(4000))
    lo, hi = obs.range()
    assert float(lo) < 0 < float(hi)
    scale, zp = obs.qparams()
    assert float(scale) > 0 and int(zp) == 0
    with pytest.raises(ValueError, match="empty"):
        obs.update(torch.empty(0))


def test_minmax_exact_and_per_channel():
    obs = OBSERVERS.get("minmax")(QScheme(bits=8))
    obs.update(torch.tensor([-2.0, 1.0]))
    obs.update(torch.tensor([0.5, 3.0]))
    assert [float(v) for v in obs.range()] == [-2.0, 3.0]
    pc = OBSERVERS.get("minmax")(QScheme(bits=8, per_channel=True, ch_axis=1))
    pc.update(torch.tensor([[1.0, -4.0, 0.0], [2.0, 5.0, -1.0]]))
    lo, hi = pc.range()
    assert lo.tolist() == [1.0, -4.0, -1.0] and hi.tolist() == [2.0, 5.0, 0.0]


def test_ema_minmax_hand_computed():
    obs = OBSERVERS.get("ema_minmax")(QScheme(bits=8), averaging_constant=0.5)
    obs.update(torch.tensor([-1.0, 1.0]))
    obs.update(torch.tensor([-3.0, 5.0]))
    assert [float(v) for v in obs.range()] == [-2.0, 3.0]


def test_percentile_on_known_data():
    x = torch.arange(1, 10001, dtype=torch.float32)  # |x| uniform on 1..10000
    obs = OBSERVERS.get("percentile")(QScheme(bits=8), percentile=99.0)
    obs.update(x)
    _, hi = obs.range()
    assert float(hi) == pytest.approx(9900.0, abs=10000 / 2048 + 1)
    aff = OBSERVERS.get("percentile")(
        QScheme(bits=8, symmetric=False, signed=False), percentile=90.0
    )
    aff.update(x)
    lo, hi = aff.range()
    assert float(lo) == pytest.approx(1000.0, abs=6) and float(hi) == pytest.approx(9000.0, abs=6)


def test_mse_clips_a_single_outlier():
    # 10000 points uniform in [-1, 1] plus one at 10. Hand: keeping t=10 gives a 4-bit step of
    # 1.33, so most points round to 0 (MSE ~ 0.1); clipping at t~1 costs the outlier
    # 81/10001 = 0.008 plus step^2/12 = 0.0015 -> the optimum is near 1
    x = torch.cat([torch.linspace(-1, 1, 10000), torch.tensor([10.0])])
    obs = OBSERVERS.get("mse")(QScheme(bits=4), candidates=400)
    obs.update(x)
    _, hi = obs.range()
    assert 0.9 <= float(hi) <= 2.0


def test_mse_matches_brute_force_search():
    x = torch.distributions.Laplace(0.0, 1.0).sample((20000,))
    s = QScheme(bits=3)
    obs = OBSERVERS.get("mse")(s, candidates=100)
    obs.update(x)
    _, hi = obs.range()

    def err(t):
        step = t / s.qmax
        q = torch.clamp(torch.round(x / step), s.qmin, s.qmax) * step
        return float(((x - q) ** 2).mean())

    ts = torch.linspace(0.3, float(x.abs().max()), 400)
    best = min(ts.tolist(), key=err)
    assert err(float(hi)) <= err(best) * 1.03


def _kl_reference(hist, nlevels):
    """Straightforward loop version of TensorRT's entropy calibration (Migacz 2017, slide 37)."""
    best, best_i = math.inf, None
    for i in range(nlevels, len(hist) + 1):
        p = [float(v) for v in hist[:i]]
        p[i - 1] += float(sum(hist[i:]))
        group = i / nlevels
        q = [0.0] * i
        for g in range(nlevels):
            members = [k for k in range(i) if int(k * nlevels / i) == g]
            nz = [k for k in members if hist[k] != 0]
            total = sum(float(hist[k]) for k in members)
            for k in nz:
                q[k] = total / len(nz)
        del group
        ps, qs = sum(p), sum(q)
        kl = 0.0
        for a, b in zip(p, q):
            if a > 0:
                kl = math.inf if b == 0 else kl + a / ps * math.log((a / ps) / (b / qs))
        if kl < best:
            best, best_i = kl, i
    return best_i


def test_kl_on_known_histogram():
    # dense part only in the first 128 bins: P == Q at i = 128 (KL 0), chosen first
    hist = np.zeros(512)
    hist[:128] = 100.0
    assert kl_threshold_bin(hist, 128) == 128
    # a decaying (Laplace-like) histogram: same index as the loop reference
    h = np.floor(1000 * np.exp(-np.arange(160) / 12.0)) + (np.arange(160) == 150)
    assert kl_threshold_bin(h, 16) == _kl_reference(h, 16)
    assert 16 < kl_threshold_bin(h, 16) < 160


def test_kl_observer_clips_gaussian_tail():
    x = torch.randn(200000)
    obs = OBSERVERS.get("kl")(QScheme(bits=8))
    obs.update(x)
    _, hi = obs.range()
    assert 2.0 < float(hi) < float(x.abs().max())
    # a spike of exact zeros (ReLU) must not pull the threshold down
    relu = OBSERVERS.get("kl")(QScheme(bits=8, symmetric=False, signed=False))
    relu.update(torch.cat([x.clamp_min(0), torch.zeros(400000)]))
    assert float(relu.range()[1]) == pytest.approx(float(hi), rel=0.05)
    # too few samples for 256 levels: keep the full range instead of a degenerate clip
    sparse = OBSERVERS.get("kl")(QScheme(bits=8, per_channel=True))
    w = torch.randn(4, 27)
    sparse.update(w)
    assert torch.equal(sparse.range()[1], w.amax(1)) and torch.equal(sparse.range()[0], w.amin(1))
    four = OBSERVERS.get("kl")(QScheme(bits=4))
    four.update(x)
    assert float(four.range()[1]) < float(hi)  # fewer levels -> tighter clip


def test_aciq_alphas_derived_from_closed_form_match_paper():
    for bits, alpha in ACIQ_PUBLISHED_LAPLACE.items():
        assert aciq_alpha(bits, "laplace") == pytest.approx(alpha, abs=0.02)
    for bits, alpha in ACIQ_PUBLISHED_GAUSS.items():
        assert aciq_alpha(bits, "gauss") == pytest.approx(alpha, abs=0.02)
    # it is a minimum of the closed form
    a = aciq_alpha(4, "laplace")
    assert aciq_mse(a, 4, "laplace") < min(
        aciq_mse(a * 0.9, 4, "laplace"), aciq_mse(a * 1.1, 4, "laplace")
    )


def test_aciq_closed_form_matches_monte_carlo():
    # closed-form MSE of clipping + uniform noise vs a simulated quantizer, Laplace b=1
    x = torch.distributions.Laplace(0.0, 1.0).sample((1000000,)).double()
    alpha, bits = 7.41, 6
    step = 2 * alpha / 2**bits
    q = (torch.floor(torch.clamp(x, -alpha, alpha - 1e-9) / step) + 0.5) * step  # midpoints
    mc = float(((x - q) ** 2).mean())
    assert mc == pytest.approx(aciq_mse(alpha, bits, "laplace"), rel=0.05)


def test_aciq_observer_uses_b_and_alpha():
    torch.manual_seed(0)
    x = torch.distributions.Laplace(0.5, 2.0).sample((100000,))
    obs = OBSERVERS.get("aciq")(QScheme(bits=4, symmetric=False))
    obs.update(x)
    lo, hi = obs.range()
    b = float((x - x.mean()).abs().mean())
    assert float(hi) == pytest.approx(float(x.mean()) + aciq_alpha(4) * b, rel=1e-4)
    assert float(lo) == pytest.approx(float(x.mean()) - aciq_alpha(4) * b, rel=1e-4)
    g = OBSERVERS.get("aciq")(QScheme(bits=4), prior="gauss")
    g.update(torch.randn(100000))
    assert float(g.range()[1]) == pytest.approx(aciq_alpha(4, "gauss"), rel=0.03)
    with pytest.raises(ValueError, match="prior"):
        OBSERVERS.get("aciq")(QScheme(bits=4), prior="cauchy")


def test_kl_affine_keeps_the_tail_above_a_spike_at_the_floor():
    # an image-like input: 90% background at -0.42 (after normalisation), the rest spread up
    # to 2.8; the floor is exact in an affine range, so KL must not clip to the spike's |x|
    import torch

    from slimkit.quant.core import QScheme
    from slimkit.quant.observers import OBSERVERS

    g = torch.Generator().manual_seed(0)
    x = torch.full((20000,), -0.42)
    x[:2000] = -0.42 + 3.22 * torch.rand(2000, generator=g)
    obs = OBSERVERS.get("kl")(QScheme(bits=8, symmetric=False, signed=False))
    obs.update(x)
    lo, hi = obs.range()
    assert float(lo) == pytest.approx(-0.42, abs=1e-6)
    assert float(hi) > 2.5  # the old |x| search settled near the spike, about 0.5


@pytest.mark.parametrize("prior", ["laplace", "gauss"])
def test_aciq_fits_relu_outputs_to_their_positive_part(prior):
    """After a ReLU most values are exact zeros; the half-Laplace (half-normal) tail is fitted
    to the positive values, so the clip does not shrink with the share of zeros."""
    torch.manual_seed(0)
    tail = torch.distributions.Exponential(1 / 2.0).sample((40000,))  # b = 2
    relu = torch.cat([tail, torch.zeros(60000)])  # 60% zeros
    clips = []
    for x in (tail, relu):
        obs = OBSERVERS.get("aciq")(QScheme(bits=4, symmetric=False, signed=False), prior=prior)
        obs.update(x)
        lo, hi = obs.range()
        assert float(lo) == pytest.approx(0.0, abs=1e-3)
        clips.append(float(hi))
    assert clips[1] == pytest.approx(clips[0], rel=1e-6)  # zeros change nothing
    spread = float(tail.mean()) if prior == "laplace" else float(tail.pow(2).mean().sqrt())
    assert clips[0] == pytest.approx(min(float(tail.max()), aciq_alpha(5, prior) * spread), rel=1e-4)


def test_kl_affine_two_sided_data_without_a_floor_spike_is_searched_on_magnitudes():
    # the input of a layer after BN: both signs, no spike at the minimum. Searching the upper
    # tail from the floor (as for an image's background) clips to a sliver just above the
    # minimum and quantizes everything else to one value; the |x| search keeps the bulk
    torch.manual_seed(0)
    x = torch.randn(200000) * 1.5 + 0.7
    affine = OBSERVERS.get("kl")(QScheme(bits=4, symmetric=False, signed=False))
    affine.update(x)
    lo, hi = (float(v) for v in affine.range())
    signed = OBSERVERS.get("kl")(QScheme(bits=4))  # TensorRT's own |x| search, 8 levels a side
    signed.update(x)
    t = float(signed.range()[1])
    # the same threshold up to re-binning the folded histogram (a few %); each side kept to what was seen
    assert hi == pytest.approx(min(t, float(x.max())), rel=0.05)
    assert lo == pytest.approx(max(-t, float(x.min())), rel=0.05)
    inside = ((x >= lo) & (x <= hi)).float().mean()
    assert lo < -1.0 and hi > 2.0 and inside > 0.9
