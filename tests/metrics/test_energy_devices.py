"""Energy model and roofline on hand-worked examples (pJ computed by hand in each test)."""

import pytest
import torch
from torch import nn

from slimkit.metrics import (
    SURVEY_DEVICES,
    DeviceProfile,
    EnergyCosts,
    Missing,
    estimate_energy,
    mac_pj,
    measure_energy,
    measure_host,
    read_cache_bytes,
    roofline,
)

BIG = DeviceProfile("big", dram_bytes=2**30, cache_bytes=2**20, macs_per_s=1e9,
                    dram_bw_bytes_per_s=1e9)
TINY = DeviceProfile("tiny", dram_bytes=2**30, cache_bytes=16, macs_per_s=1e9,
                     dram_bw_bytes_per_s=1e9)


def conv() -> nn.Module:
    return nn.Conv2d(1, 2, 3, bias=False)  # on (1, 4, 4): out (2, 2, 2), 72 MACs, 18 weights


def test_mac_energy_by_width():
    assert mac_pj(32, 32) == pytest.approx(3.7 + 0.9)
    assert mac_pj(8, 8) == pytest.approx(0.2 + 0.03)
    assert mac_pj(4, 4) == pytest.approx(0.2 * 16 / 64 + 0.03 * 4 / 8)  # 0.065
    assert mac_pj(8, 32) == pytest.approx(4.6)  # float activations: dequantized fp32 MAC
    assert mac_pj(32, 32, EnergyCosts(fp32_mult=1.0, fp32_add=0.5)) == 1.5
    with pytest.raises(ValueError, match="weight_bits"):
        mac_pj(0, 8)
    with pytest.raises(ValueError, match="fp32_add"):
        EnergyCosts(fp32_add=-1)


def test_energy_fp32_in_cache_by_hand():
    e = estimate_energy(conv(), (1, 4, 4), device=BIG)
    # 72 MACs * 4.6 pJ; 18 weights read from SRAM at 5 pJ; 16 inputs + 8 outputs at 5 pJ
    assert e.mac_uj == pytest.approx(72 * 4.6e-6)
    assert e.weight_uj == pytest.approx(18 * 5e-6)
    assert e.act_uj == pytest.approx(24 * 5e-6)
    assert e.total_uj == pytest.approx(541.2e-6)
    assert e.weight_memory == "sram" and e.macs == 72
    assert e.per_layer["Conv2d"].total_uj == pytest.approx(e.total_uj)


def test_energy_int8_in_dram_by_hand():
    e = estimate_energy(conv(), (1, 4, 4), device=TINY, weight_bits=8, act_bits=8)
    # 18 weight bytes > 16-byte cache: DRAM, 144 bits * 640/32 pJ; 24 act bytes > 16: DRAM
    assert e.weight_memory == "dram"
    assert e.weight_uj * 1e6 == pytest.approx(18 * 8 * 20)
    assert e.act_uj * 1e6 == pytest.approx(24 * 8 * 20)
    assert e.mac_uj * 1e6 == pytest.approx(72 * 0.23)
    assert e.total_uj * 1e6 == pytest.approx(2880 + 3840 + 16.56)


def test_energy_skip_zeros_and_zero_mac_layers():
    c = conv()
    with torch.no_grad():
        c.weight[1] = 0.0  # 9 non-zero weights left
    net = nn.Sequential(c, nn.ReLU())
    e = estimate_energy(net, (1, 4, 4), device=BIG, skip_zeros=True)
    # 9 weights * 4 outputs each = 36 MACs; ReLU costs nothing (fused)
    assert e.macs == 36
    assert e.total_uj * 1e6 == pytest.approx(36 * 4.6 + 9 * 5 + 24 * 5)
    assert e.per_layer["1"].total_uj == 0


def test_default_device_is_survey_device1():
    assert estimate_energy(conv(), (1, 4, 4)).device == "device1"


def test_roofline_memory_and_compute_bound_by_hand():
    fc = nn.Linear(100, 10, bias=False)  # 1000 MACs; 4000 weight bytes + 110 * 4 act bytes
    slow_mem = DeviceProfile("m", 2**30, 2**20, macs_per_s=1e6, dram_bw_bytes_per_s=1e6)
    est = roofline(fc, (100,), slow_mem)
    assert est.compute_ms == pytest.approx(1.0)
    assert est.memory_ms == pytest.approx(4.44)
    assert est.bound == "memory" and est.latency_ms == pytest.approx(4.44)
    slow_alu = DeviceProfile("c", 2**30, 2**20, macs_per_s=1e5, dram_bw_bytes_per_s=1e6)
    est = roofline(fc, (100,), slow_alu, weight_bits=8, act_bits=8)
    assert est.bound == "compute" and est.latency_ms == pytest.approx(10.0)
    assert est.memory_ms == pytest.approx((1000 + 110) / 1e6 * 1e3)
    assert est.energy_uj * 1e6 == pytest.approx(1000 * 0.23 + 1000 * 8 / 32 * 5 + 110 * 8 / 32 * 5)


def test_device_profiles_validate():
    assert SURVEY_DEVICES["device2"].macs_per_s == 3.87e9
    assert SURVEY_DEVICES["device1"].cache_bytes == 2 * 1024**2
    with pytest.raises(ValueError, match="macs_per_s"):
        DeviceProfile("x", 10, 1, 0, 1)
    with pytest.raises(ValueError, match="cache_bytes"):
        DeviceProfile("x", 10, 100, 1, 1)


def test_measure_host_small_and_restores_threads():
    host = measure_host(n=64, copy_mb=1, repeats=1, threads=2)
    assert host.macs_per_s > 0 and host.dram_bw_bytes_per_s > 0 and host.cache_bytes > 0
    assert torch.get_num_threads() == 1
    assert "2 threads" in host.note
    with pytest.raises(ValueError):
        measure_host(n=4)


def test_read_cache_bytes_parses_sysfs(tmp_path):
    for i, (level, kind, size) in enumerate([(1, "Data", "48K"), (2, "Unified", "1024K"),
                                             (3, "Unified", "32M")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    assert read_cache_bytes(str(tmp_path)) == {"L1d": 48 * 1024, "L2": 1024**2,
                                               "L3": 32 * 1024**2}


def test_measure_energy_missing_and_fake_rapl(tmp_path):
    missing = measure_energy(nn.Linear(2, 2), (2,), repeats=1, root=tmp_path / "none")
    assert isinstance(missing, Missing) and "RAPL" in missing.reason and not missing
    dom = tmp_path / "intel-rapl:0"
    dom.mkdir()
    (dom / "energy_uj").write_text("1000\n")
    (tmp_path / "intel-rapl:0:0").mkdir()  # sub-domain: not summed
    got = measure_energy(nn.Linear(2, 2), (2,), repeats=2, warmup=0, root=tmp_path)
    assert got.domains == ("intel-rapl:0",) and got.uj_per_run == 0 and got.repeats == 2
