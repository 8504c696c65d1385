"""The distillation table's confidence interval, against independent references."""

import statistics

import pytest

from slimkit.survey.tables import mean_ci95


def test_ci_matches_student_t_quantiles():
    # textbook two-sided 95% t quantiles (df 2, 4, 9), not the module's own table
    for values, t in (([1.0, 2.0, 4.0], 4.303), ([0.5, 1.0, 2.5, 3.0, 2.0], 2.776),
                      ([float(i) for i in range(10)], 2.262)):
        m, h = mean_ci95(values)
        assert m == pytest.approx(statistics.mean(values))
        assert h == pytest.approx(t * statistics.stdev(values) / len(values) ** 0.5, rel=1e-3)


def test_ci_against_scipy_when_installed():
    stats = pytest.importorskip("scipy.stats")
    values = [2.6, 1.2, 2.2, 3.1, 2.9, 1.8]
    m, h = mean_ci95(values)
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=m, scale=stats.sem(values))
    assert (m - h, m + h) == pytest.approx((lo, hi), rel=1e-3)


def test_one_value_has_no_interval_and_many_use_the_normal():
    assert mean_ci95([1.5]) == (1.5, 0.0)
    values = [float(i % 3) for i in range(40)]
    _, h = mean_ci95(values)
    assert h == pytest.approx(1.96 * statistics.stdev(values) / 40 ** 0.5)
