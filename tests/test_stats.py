"""Rolling statistics on their own: percentiles, summaries, the window's edges, shared samples, rate limits."""

from __future__ import annotations

import pytest

from providers.types import RateLimitInfo
from router_policies.stats import (
    DEFAULT_MAX_SAMPLES,
    DEFAULT_WINDOW_S,
    EMPTY,
    EXACT_BELOW,
    REFRESH_S,
    RateLimitState,
    RollingWindow,
    Sample,
    Summary,
    percentile,
)


def test_constants():
    assert (DEFAULT_WINDOW_S, DEFAULT_MAX_SAMPLES, EXACT_BELOW, REFRESH_S) == (300.0, 512, 16, 0.1)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 0.5, 5.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 0.5, 3.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 0.9, 5.0),  # nearest rank: round(3.6) = 4
        ([1.0, 2.0, 3.0, 4.0, 5.0], 0.0, 1.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 1.0, 5.0),
        ([10.0, 20.0, 30.0, 40.0], 0.5, 30.0),  # round(1.5) = 2 (banker's rounding)
        ([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 110.0], 0.9, 100.0),
    ],
)
def test_percentile_is_nearest_rank(values, q, expected):
    assert percentile(values, q) == expected


def test_percentile_stays_inside_the_list():
    assert percentile([1.0, 2.0], 1.5) == 2.0 and percentile([1.0, 2.0], -0.5) == 1.0


def window(now: list[float], **kwargs) -> RollingWindow:
    return RollingWindow(clock=lambda: now[0], **kwargs)


def test_an_empty_window_summarises_to_empty():
    now = [100.0]
    assert window(now).summary() is EMPTY and Summary() == EMPTY
    assert (EMPTY.count, EMPTY.error_rate, EMPTY.ttft_p50_ms, EMPTY.tps_p50) == (0, 0.0, None, None)


def test_summary_counts_errors_and_takes_percentiles_of_what_was_measured():
    now = [100.0]
    w = window(now)
    for ttft, tps in [(100.0, 50.0), (200.0, 40.0), (300.0, None), (400.0, 20.0)]:
        w.add(Sample(now[0], True, ttft_ms=ttft, tokens_per_s=tps))
    w.add(Sample(now[0], False))
    got = w.summary()
    assert got == Summary(
        count=5,
        error_rate=0.2,
        ttft_p50_ms=300.0,
        ttft_p90_ms=400.0,
        tps_p50=40.0,
        tps_p90=20.0,  # throughput percentiles count from the slow end: 90 % reached it
        ttft_p75_ms=300.0,
        ttft_p99_ms=400.0,
        tps_p75=20.0,
        tps_p99=20.0,
    )
    assert len(w) == 5


def test_only_failures_leave_the_figures_unknown():
    now = [100.0]
    w = window(now)
    w.add(Sample(now[0], False))
    assert w.summary() == Summary(count=1, error_rate=1.0)


def test_samples_older_than_the_window_drop_out():
    now = [1000.0]
    w = window(now, window_s=60.0)
    w.add(Sample(940.0, False))  # exactly at the horizon: still in
    w.add(Sample(970.0, True, ttft_ms=10.0))
    assert w.summary().count == 2
    now[0] = 1000.5
    assert w.summary() == Summary(
        count=1, error_rate=0.0, ttft_p50_ms=10.0, ttft_p90_ms=10.0, ttft_p75_ms=10.0, ttft_p99_ms=10.0
    )
    now[0] = 1031.0
    assert w.summary() is EMPTY and len(w) == 0


def test_the_window_keeps_at_most_max_samples():
    now = [0.0]
    w = window(now, max_samples=3)
    for i in range(5):
        w.add(Sample(0.0, True, ttft_ms=float(i)))
    assert len(w) == 3 and w.summary().ttft_p50_ms == 3.0


def test_a_large_window_is_summarised_at_most_every_refresh_interval():
    now = [0.0]
    w = window(now)
    for _ in range(EXACT_BELOW - 1):
        w.add(Sample(0.0, True, ttft_ms=100.0))
    first = w.summary()
    w.add(Sample(0.0, False))  # EXACT_BELOW samples now: no longer exact on every call
    now[0] = REFRESH_S / 2
    assert w.summary() is first
    now[0] = REFRESH_S
    second = w.summary()
    assert second.count == EXACT_BELOW
    now[0] = REFRESH_S * 3
    assert w.summary() is second  # nothing new: not summarised again


def test_a_small_window_is_summarised_again_only_when_something_changed():
    now = [0.0]
    w = window(now)
    w.add(Sample(0.0, True, ttft_ms=1.0))
    first = w.summary()
    assert w.summary() is first
    w.add(Sample(0.0, True, ttft_ms=2.0))
    assert w.summary().count == 2


def test_p90_is_not_the_maximum():
    now = [0.0]
    w = window(now)
    for i in range(1, 12):
        w.add(Sample(0.0, True, ttft_ms=10.0 * i, tokens_per_s=float(i)))
    got = w.summary()
    assert (got.ttft_p90_ms, got.tps_p90, got.ttft_p50_ms, got.tps_p50) == (100.0, 2.0, 60.0, 6.0)
    assert (got.ttft_ms("p75"), got.ttft_ms("p99"), got.tps("p75"), got.tps("p99")) == (90.0, 110.0, 3.0, 1.0)


def test_token_sums_give_the_cache_hit_rate_and_mix_and_travel_through_the_store():
    now = [0.0]
    w = window(now)
    w.add(Sample(0.0, True, ttft_ms=5.0, prompt_tokens=1000, cached_tokens=800, completion_tokens=100))
    w.add(Sample(0.0, True, ttft_ms=5.0))  # no usage reported: not in the sums
    got = w.summary()
    assert (got.usage_count, got.prompt_tokens, got.cached_tokens, got.completion_tokens) == (
        1,
        1000,
        800,
        100,
    )
    with_tokens = Sample(1.5, True, 12.5, 30.0, 1000, 800, 100)
    assert Sample.decode(with_tokens.encode()) == with_tokens
    assert Sample.decode("1.500,1,12.50,30.00") == Sample(1.5, True, 12.5, 30.0)
    assert Sample.decode("1.5,1,2,3,4") is None


def test_replace_adopts_the_shared_view_in_time_order():
    now = [100.0]
    w = window(now)
    w.add(Sample(99.0, True, ttft_ms=1.0))
    assert w.summary().count == 1
    w.replace([Sample(90.0, False), Sample(50.0, True, ttft_ms=7.0), Sample(95.0, True, ttft_ms=9.0)])
    got = w.summary()
    assert got.count == 3 and got.error_rate == pytest.approx(1 / 3)
    assert (got.ttft_p50_ms, got.ttft_p90_ms) == (7.0, 9.0)
    now[0] = 355.0  # 300 s back reaches 55.0: the oldest (50.0) went first
    assert w.summary() == Summary(
        count=2, error_rate=0.5, ttft_p50_ms=9.0, ttft_p90_ms=9.0, ttft_p75_ms=9.0, ttft_p99_ms=9.0
    )


def test_samples_round_trip_through_their_text_form():
    full = Sample(1700000000.1234, True, ttft_ms=123.456, tokens_per_s=78.9)
    assert full.encode() == "1700000000.123,1,123.46,78.90"
    assert Sample.decode(full.encode()) == Sample(1700000000.123, True, 123.46, 78.9)
    bare = Sample(5.0, False)
    assert bare.encode() == "5.000,0,," and Sample.decode(bare.encode()) == bare


@pytest.mark.parametrize("text", ["", "1,1,2", "1,1,2,3,4", "x,1,,", "1,1,y,", "1,1,,z"])
def test_damaged_sample_text_is_skipped(text):
    assert Sample.decode(text) is None


def test_decode_reads_ok_only_from_1():
    assert Sample.decode("1.0,0,,").ok is False and Sample.decode("1.0,2,,").ok is False  # type: ignore[union-attr]


def _limit(**info: float) -> RateLimitState:
    return RateLimitState(RateLimitInfo(**info), at=100.0)  # type: ignore[arg-type]


def test_remaining_fraction_of_requests_then_of_tokens():
    assert _limit(limit_requests=100, remaining_requests=25).remaining_fraction(100.0) == 0.25
    assert _limit(limit_tokens=1000, remaining_tokens=100).remaining_fraction(100.0) == 0.1
    both = _limit(limit_requests=10, remaining_requests=5, limit_tokens=10, remaining_tokens=1)
    assert both.remaining_fraction(100.0) == 0.5  # requests first
    assert _limit(limit_requests=0, remaining_requests=0).remaining_fraction(100.0) is None
    assert _limit(remaining_requests=3).remaining_fraction(100.0) is None
    assert _limit(limit_tokens=1000).remaining_fraction(100.0) is None
    assert _limit(limit_requests=1000).remaining_fraction(100.0) is None
    assert _limit().remaining_fraction(100.0) is None


def test_remaining_fraction_expires_with_the_reset():
    requests = _limit(limit_requests=10, remaining_requests=0, reset_requests_s=5.0, reset_tokens_s=60.0)
    assert requests.remaining_fraction(105.0) == 0.0 and requests.remaining_fraction(105.1) is None
    tokens = _limit(limit_tokens=10, remaining_tokens=2, reset_tokens_s=5.0)
    assert tokens.remaining_fraction(105.0) == 0.2 and tokens.remaining_fraction(105.1) is None
