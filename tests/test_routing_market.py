"""The routing market benchmark on a tiny workload: it replays exactly, and the oracle is the floor."""

from __future__ import annotations

from bench.routing_market import VARIANTS, run_oracle, run_variant, workload


def test_the_market_replays_exactly_and_the_oracle_meets_the_slo_at_least_as_often():
    load = workload(seed=3, requests=300, rate_per_s=5.0, tenants=30)
    assert load == workload(seed=3, requests=300, rate_per_s=5.0, tenants=30)
    oracle = run_oracle(3, load)
    for variant in (VARIANTS[5], VARIANTS[8]):  # the default, and with a target and stickiness
        first, again = run_variant(variant, 3, load), run_variant(variant, 3, load)
        assert first == again
        assert 0.0 < first["success_rate"] <= 1.0 and first["cost_per_1k_ok_usd"] > 0
        assert oracle["slo_attainment"] >= first["slo_attainment"]
    assert oracle["success_rate"] == 1.0
