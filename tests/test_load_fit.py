"""The load-aware time-to-first-token fit on its own: slope, spread, recency, and its edges."""

from __future__ import annotations

import math

import pytest

from router_policies.load_fit import HALF_LIFE_S, MIN_SAMPLES, fit
from router_policies.stats import RollingWindow, Sample


def test_too_few_samples_give_no_fit():
    assert fit([(0.0, 0, 100.0)] * (MIN_SAMPLES - 1), now=0.0) is None


def test_ttft_growing_with_load_is_predicted_at_the_load_asked_for():
    # ttft = 100 ms · 2^n: exactly log-linear, so the fit recovers it and the spread is nil.
    points = [(0.0, n, 100.0 * 2**n) for n in range(5) for _ in range(3)]
    fitted = fit(points, now=0.0)
    assert fitted is not None and fitted.samples == 15
    assert fitted.slope == pytest.approx(math.log(2))
    for n in (0, 3, 6):  # beyond the measured loads too
        assert fitted.ttft_ms("p50", n) == pytest.approx(100.0 * 2**n)
        assert fitted.ttft_ms("p99", n) == pytest.approx(100.0 * 2**n)


def test_the_percentiles_spread_as_the_samples_do():
    points = [(0.0, 2, ms) for ms in (100.0, 110.0, 120.0, 130.0, 140.0, 150.0, 160.0, 170.0, 180.0, 500.0)]
    fitted = fit(points, now=0.0)
    assert fitted is not None and fitted.slope == 0.0
    p50, p75, p90, p99 = (fitted.ttft_ms(q, 2) for q in ("p50", "p75", "p90", "p99"))
    assert p50 == pytest.approx(140.0) and p75 == pytest.approx(170.0)
    assert p90 == pytest.approx(180.0) and p99 == pytest.approx(500.0)


def test_load_never_makes_a_deployment_faster():
    points = [(0.0, n, 1000.0 / (n + 1)) for n in range(10)]
    fitted = fit(points, now=0.0)
    assert fitted is not None and fitted.slope == 0.0
    assert fitted.ttft_ms("p50", 9) >= fitted.ttft_ms("p50", 0) - 1e-9


def test_recent_samples_outweigh_old_ones():
    old = [(0.0, 0, 1000.0)] * 10
    new = [(10 * HALF_LIFE_S, 0, 100.0)] * 10
    fitted = fit(old + new, now=10 * HALF_LIFE_S)
    assert fitted is not None
    assert fitted.ttft_ms("p50", 0) == pytest.approx(100.0)
    assert fitted.ttft_ms("p90", 0) == pytest.approx(100.0)  # 1/1024 of the weight is old


def test_the_window_fits_only_successes_whose_load_is_known():
    now = [1000.0]
    window = RollingWindow(clock=lambda: now[0])
    for n in range(MIN_SAMPLES):
        window.add(Sample(now[0], True, ttft_ms=100.0 * (n + 1), in_flight=n))
    window.add(Sample(now[0], True, ttft_ms=99_999.0))  # load unknown: not fitted
    window.add(Sample(now[0], False, in_flight=3))  # a failure: no time to first token
    fitted = window.summary().load_fit
    assert fitted is not None and fitted.samples == MIN_SAMPLES
    assert fitted.ttft_ms("p50", 0) < 200.0


def test_the_load_travels_with_the_sample_through_the_store():
    sample = Sample(1.5, True, 12.5, 30.0, in_flight=7)
    assert sample.encode() == "1.500,1,12.50,30.00,-1,0,0,7"
    assert Sample.decode(sample.encode()) == sample
    billed = Sample(1.5, True, 12.5, 30.0, 100, 40, 20, in_flight=0)
    assert Sample.decode(billed.encode()) == billed
    assert Sample.decode("1.5,1,12.5,30,-1,0,0,x") is None
