"""The dashboard's admin API aggregates over HTTP, on SQLite and PostgreSQL: figures worked out by hand."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from gateway.db.rollup import TTFT_ERROR
from tests.harness import database_url
from tests.ledger_seed import BOTH_DAYS, CONFIG, DAY1, T0, row, seed

ADMIN = "admin-secret"
AUTH = {"authorization": f"Bearer {ADMIN}"}


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    url, drop = database_url(request.param, tmp_path)
    yield url
    drop()


def start(gateway: Any, fake: Any, db: str, tmp_path: Any) -> httpx.Client:
    gw = gateway(
        CONFIG.format(url=fake().url), database_url=db, admin_key=ADMIN, ledger_spool_dir=tmp_path / "s"
    )
    return httpx.Client(base_url=gw.url, headers=AUTH, timeout=30)


def test_summary_totals_and_filters(db, fake, gateway, tmp_path):
    _, key_b = seed(db)
    admin = start(gateway, fake, db, tmp_path)
    day1 = admin.get("/admin/api/summary", params=DAY1).json()
    assert day1["start"] == DAY1["start"] and day1["end"] == DAY1["end"]
    assert day1["data"] == {
        "requests": 5, "refused": 2, "errors": 1, "error_rate": round(1 / 3, 6), "input_tokens": 3100,
        "output_tokens": 1500, "cost_usd": 0.014, "streamed": 1, "cancelled": 0, "rag_requests": 1,
    }  # fmt: skip
    p2 = admin.get("/admin/api/summary", params={**DAY1, "provider": "p2", "model": "m1"}).json()["data"]
    assert (p2["requests"], p2["cost_usd"]) == (1, 0.012)
    b = admin.get("/admin/api/summary", params={**BOTH_DAYS, "key": key_b}).json()["data"]
    assert (b["requests"], b["cost_usd"], b["error_rate"]) == (1, 0.003, 0.0)
    empty = admin.get("/admin/api/summary", params={**DAY1, "model": "nope"}).json()["data"]
    assert (empty["requests"], empty["cost_usd"], empty["error_rate"]) == (0, 0.0, None)
    by_provider = admin.get("/admin/api/spend", params={**BOTH_DAYS, "group_by": "provider", "key": key_b})
    assert [(r["group"], r["cost_usd"]) for r in by_provider.json()["data"]] == [("p1", 0.003)]


def test_savings_against_dearest_and_cheapest_up(db, fake, gateway, tmp_path):
    seed(db)
    admin = start(gateway, fake, db, tmp_path)
    report = admin.get("/admin/api/savings", params={**BOTH_DAYS, "bucket": "day"}).json()
    day1, day2 = report["data"]
    # Day 1: p1 and p2 both answered; 3000 tokens in, 1500 out.
    assert day1 == {
        "bucket": "2025-03-01T00:00:00Z", "actual_usd": 0.014, "most_expensive_usd": 0.018,
        "cheapest_up_usd": 0.006, "saved_vs_most_expensive_usd": 0.004,
        "saved_vs_most_expensive_pct": 22.2222, "extra_vs_cheapest_up_usd": 0.008,
        "extra_vs_cheapest_up_pct": 133.3333, "cache_hits": 0, "cache_saved_usd": 0.0,
    }  # fmt: skip
    # Day 2: only p1 answered, and the request went there: nothing paid over the cheapest.
    assert (day2["actual_usd"], day2["most_expensive_usd"], day2["cheapest_up_usd"]) == (0.003, 0.009, 0.003)
    total = report["total"]
    assert (total["actual_usd"], total["most_expensive_usd"], total["cheapest_up_usd"]) == (
        0.017,
        0.027,
        0.009,
    )
    hourly = admin.get("/admin/api/savings", params={**DAY1, "bucket": "hour"}).json()["data"]
    assert [h["bucket"] for h in hourly] == ["2025-03-01T10:00:00Z"]


def test_deployments_latency_errors_and_live_state(db, fake, gateway, tmp_path):
    whole = row("gen-whole", T0 + timedelta(days=2), None, "p2/m1-up", output_tokens=100, ttft_ms=200.0,
                latency_ms=200.0)  # fmt: skip
    seed(db, [whole])
    admin = start(gateway, fake, db, tmp_path)
    data = admin.get("/admin/api/deployments", params=BOTH_DAYS).json()["data"]
    by_id = {d["deployment"]: d for d in data}
    assert set(by_id) == {"p1/m1-up", "p2/m1-up"}
    p1, p2 = by_id["p1/m1-up"], by_id["p2/m1-up"]
    assert (p1["requests"], p1["errors"], p1["error_rate"]) == (3, 1, round(1 / 3, 6))
    # Percentiles come from log-spaced histogram bins: within TTFT_ERROR of the exact values.
    close = pytest.approx
    assert (p1["ttft_p50_ms"], p1["ttft_p95_ms"]) == (
        close(10.0, rel=TTFT_ERROR),
        close(20.0, rel=TTFT_ERROR),
    )
    assert p1["tokens_per_s"] == 5000.0  # 1500 tokens over (110-10) + (220-20) ms
    assert (p2["requests"], p2["tokens_per_s"]) == (1, 2000.0)
    assert p2["ttft_p50_ms"] == close(30.0, rel=TTFT_ERROR)
    for d in (p1, p2):
        assert d["configured"] and d["breaker"] == "closed" and d["in_flight"] == 0 and d["models"] == ["m1"]
    assert p2["input_price_per_mtok"] == 3.0
    day3 = {"start": "2025-03-03T00:00:00Z", "end": "2025-03-04T00:00:00Z"}
    one_piece = admin.get("/admin/api/deployments", params=day3).json()["data"]
    assert {d["deployment"]: d["tokens_per_s"] for d in one_piece} == {"p1/m1-up": None, "p2/m1-up": 500.0}


def test_key_usage_budget_and_refusals(db, fake, gateway, tmp_path):
    key_a, key_b = seed(db)
    admin = start(gateway, fake, db, tmp_path)
    data = admin.get("/admin/api/key-usage", params=BOTH_DAYS).json()["data"]
    by_name = {k["name"]: k for k in data}
    a = by_name["team-a"]
    assert a["id"] == key_a
    assert a["usage"] == {"requests": 4, "cost_usd": 0.014, "refused": {"402": 1, "403": 0, "429": 1}}
    assert a["budget"]["budget_usd"] == 1.0 and a["budget"]["period"] == "day" and a["budget"]["resets_at"]
    assert by_name["team-b"]["id"] == key_b and by_name["team-b"]["budget"] is None
    assert by_name["team-b"]["usage"]["requests"] == 1
    assert by_name[None]["usage"]["requests"] == 1  # requests made without a key


def test_request_detail_with_attempts(db, fake, gateway, tmp_path):
    seed(db)
    admin = start(gateway, fake, db, tmp_path)
    detail = admin.get("/admin/api/requests/gen-2").json()
    assert detail["request_id"] == "gen-2" and detail["created_at"] == "2025-03-01T10:25:00Z"
    assert [a["outcome"] for a in detail["attempts"]] == ["server_error", "ok"]
    assert detail["attempts"][0]["message"] == "upstream said 500"
    assert (detail["cost_usd"], detail["output_tokens"], detail["prompt"]) == (0.012, 1000, None)
    missing = admin.get("/admin/api/requests/gen-nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_csv_export_streams_every_row_of_the_range(db, fake, gateway, tmp_path):
    many = [row(f"bulk-{i:05d}", T0 + timedelta(days=5, seconds=i), None, "p1/m1-up", cost_usd=0.001)
            for i in range(2500)]  # fmt: skip
    key_a, _ = seed(db, many)
    admin = start(gateway, fake, db, tmp_path)
    with admin.stream("GET", "/admin/api/ledger.csv", params={"start": "2025-03-01T00:00:00Z",
                      "end": "2025-03-10T00:00:00Z"}) as response:  # fmt: skip
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        body = "".join(response.iter_text())
    table = list(csv.DictReader(io.StringIO(body)))
    assert len(table) == 2506
    assert table[0]["request_id"] == "bulk-02499" and table[-1]["request_id"] == "gen-1"
    assert len({r["request_id"] for r in table}) == 2506
    mine = admin.get("/admin/api/ledger.csv", params={**BOTH_DAYS, "key": key_a}).text
    assert [r["request_id"] for r in csv.DictReader(io.StringIO(mine))] == [
        "gen-5",
        "gen-4",
        "gen-2",
        "gen-1",
    ]
    assert admin.get("/admin/api/ledger.csv", params={"start": "soon"}).status_code == 400


def test_reports_need_the_admin_key(db, fake, gateway, tmp_path):
    admin = start(gateway, fake, db, tmp_path)
    key = admin.post("/admin/api/keys", json={"name": "app"}).json()["key"]
    for path in ("summary", "savings", "deployments", "key-usage", "ledger.csv"):
        url = f"/admin/api/{path}"
        assert admin.get(url, headers={"authorization": f"Bearer {key}"}).status_code == 403, path
        assert admin.get(url, headers={"authorization": ""}).status_code == 401, path
    for params in ({"start": "2025-03-02T00:00:00Z", "end": "2025-03-01T00:00:00Z"}, {"bucket": "week"}):
        error = admin.get("/admin/api/savings", params=params)
        assert error.status_code == 400 and error.json()["error"]["message"]
