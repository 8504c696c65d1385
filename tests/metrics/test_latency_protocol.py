"""The latency protocol: pinned threads, interleaved rounds, spread, unstable host."""

import copy
import os
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from slimkit.metrics import compare_latency, measure_latency, ratios
from slimkit.metrics.latency import host_note, relative_iqr
from slimkit.metrics.ratios import Measurement


def _lenet():
    from slimkit import zoo

    torch.manual_seed(0)
    return zoo.create("lenet5").eval()


def test_relative_iqr_by_hand():
    assert relative_iqr([1, 2, 3, 4, 5]) == pytest.approx((4 - 2) / 3)
    assert relative_iqr([7.0]) == 0.0


def test_threads_are_pinned_recorded_and_restored():
    before = torch.get_num_threads()
    cmp = compare_latency([nn.Linear(8, 4)], (8,), rounds=3, calls=2, threads=1)
    assert cmp.threads == 1 and cmp.latencies[0].threads == 1
    assert torch.get_num_threads() == before
    assert measure_latency(nn.Linear(8, 4), (8,), warmup=1, repeats=3).threads == 1


def test_rounds_are_interleaved_in_alternating_order():
    calls = []
    a = lambda: calls.append("a")  # noqa: E731
    b = lambda: calls.append("b")  # noqa: E731
    compare_latency([a, b], warmup=0, rounds=2, calls=1)
    assert calls == ["a", "b", "b", "a"]


def test_a_twice_slower_model_has_r_t_near_two():
    def busy(seconds):
        def run():
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass
        return run

    cmp = compare_latency([busy(0.0005), busy(0.001)], warmup=1, rounds=9, calls=3)
    r = cmp.ratio(1, 0)
    assert r.value == pytest.approx(2.0, rel=0.15)


def test_jittery_timings_are_unstable_and_void_r_t():
    state = {"i": 0}

    def jitter():  # alternating 0.2 ms and 2 ms calls: spread far above any limit
        state["i"] += 1
        end = time.perf_counter() + (0.002 if state["i"] % 2 else 0.0002)
        while time.perf_counter() < end:
            pass

    cmp = compare_latency([jitter, jitter], warmup=0, rounds=6, calls=2)
    lat = cmp.latencies[0]
    assert not lat.stable and "spread" in lat.reason
    m = Measurement(latency_ms=lat.median_ms, latency_note=lat.reason)
    assert ratios(Measurement(latency_ms=1.0), m).r_T is None


@pytest.fixture
def cpu_hog():
    """One spinning process per core of this process, killed at the end of the test."""
    n = len(os.sched_getaffinity(0))
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    time.sleep(0.3)  # let them start spinning
    try:
        yield n
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def test_r_t_of_a_model_against_itself_holds_under_a_cpu_hog(cpu_hog):
    model = _lenet()
    twin = copy.deepcopy(model)
    start = time.perf_counter()
    cmp = compare_latency([model, twin], (1, 28, 28), rounds=15, calls=5, budget_s=6.0)
    r = cmp.ratio(1, 0)
    assert 0.85 <= r.value <= 1.15, (r, cmp.medians_ms)
    assert time.perf_counter() - start < 8.0
    assert host_note(1) != ""  # the hog is seen: the host is said to be busy
    assert not cmp.latencies[0].stable and "host busy" in cmp.latencies[0].reason
