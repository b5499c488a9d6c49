"""Per-key limits end to end: rpm and tpm (429 with headers), budgets (402), concurrency, in-process
and over Redis. Across processes, test_scale_out.py (three replicas) and test_workers.py (two workers
on one SQLite file) hold rpm."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from gateway.simulator import Behaviour
from tests.harness import config_for, new_key, redis_url, runtime_of, wait_for

ADMIN = "admin-secret"
HI = [{"role": "user", "content": "hi"}]


def client(base: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=30)


def start(gateway: Any, fake: Any, tmp_path: Any, behaviour: Behaviour | None = None, **settings: Any) -> Any:
    up = fake(behaviour=behaviour)
    settings.setdefault("database_url", f"sqlite+aiosqlite:///{tmp_path}/g.db")
    return gateway(
        config_for({"a": up.url}), admin_key=ADMIN, ledger_spool_dir=tmp_path / "spool", **settings
    )


def first_refusal(api: openai.OpenAI, error: type[openai.APIStatusError], timeout_s: float) -> Any:
    """Send `hi` until the gateway refuses it with `error` (bounded): spend is booked just after a response."""

    def refused() -> Any:
        try:
            api.chat.completions.create(model="m", messages=HI)
        except error as exc:
            return exc
        return None

    return wait_for(refused, timeout_s=timeout_s)


def test_rpm_gives_429_with_retry_after_and_ratelimit_headers(fake, gateway, tmp_path):
    gw = start(gateway, fake, tmp_path)
    api = client(gw.url, new_key(gw.url, rpm=5)["key"])
    remaining = []
    for _ in range(5):
        raw = api.chat.completions.with_raw_response.create(model="m", messages=HI)
        assert raw.headers["x-ratelimit-limit-requests"] == "5"
        remaining.append(int(raw.headers["x-ratelimit-remaining-requests"]))
    assert remaining == [4, 3, 2, 1, 0]
    with pytest.raises(openai.RateLimitError, match="5 requests per minute") as caught:
        api.chat.completions.create(model="m", messages=HI)
    headers = caught.value.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-remaining-requests"] == "0" and headers["x-ratelimit-limit-requests"] == "5"


def test_tpm_counts_tokens_of_finished_requests(fake, gateway, tmp_path):
    gw = start(gateway, fake, tmp_path, Behaviour(completion_tokens=20))
    api = client(gw.url, new_key(gw.url, tpm=20)["key"])
    raw = api.chat.completions.with_raw_response.create(model="m", messages=HI)
    # Admitted with nothing counted yet; its reservation (prompt + default max_tokens) uses the rest.
    assert (
        raw.headers["x-ratelimit-limit-tokens"] == "20" and raw.headers["x-ratelimit-remaining-tokens"] == "0"
    )

    error = first_refusal(api, openai.RateLimitError, timeout_s=5)
    assert error.response.headers["x-ratelimit-remaining-tokens"] == "0"
    assert int(error.response.headers["retry-after"]) >= 1 and "tokens per minute" in str(error)


def test_budget_gives_402_naming_the_budget_and_its_reset(fake, gateway, tmp_path):
    gw = start(gateway, fake, tmp_path)
    api = client(gw.url, new_key(gw.url, name="tiny", budget_usd=0.000001, budget_period="day")["key"])
    api.chat.completions.create(model="m", messages=HI)  # admitted: nothing spent yet

    error = first_refusal(api, openai.APIStatusError, timeout_s=5)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
    assert error.status_code == 402 and error.body["code"] == "budget_exceeded"
    assert (
        "key 'tiny'" in error.message
        and "daily budget of $0.00" in error.message
        and tomorrow in error.message
    )


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_budget_holds_under_200_concurrent_requests(backend, fake, gateway, tmp_path):
    """200 requests at once against a budget worth ~20: in-flight reservations stop the rest."""
    shared: dict[str, Any] = {"database_url": f"sqlite+aiosqlite:///{tmp_path}/g.db"}
    if backend == "redis":
        shared["redis_url"] = redis_url()
    up = fake(behaviour=Behaviour(first_byte_ms=400, completion_tokens=50))
    config = config_for({"a": up.url})
    replicas = [gateway(config, admin_key=ADMIN, ledger_spool_dir=tmp_path / f"s{i}", **shared) for i in range(2 if backend == "redis" else 1)]  # fmt: skip
    base = replicas[0].url
    one = client(base, ADMIN).chat.completions.create(model="m", messages=HI, max_tokens=50)
    cost_one = one.usage.model_extra["cost"]
    budget = 20.5 * cost_one
    key = new_key(base, name="burst", budget_usd=budget, budget_period="total")

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=250)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            body = {"model": "m", "messages": HI, "max_tokens": 50}
            headers = {"authorization": f"Bearer {key['key']}"}
            calls = [
                http.post(
                    f"{replicas[i % len(replicas)].url}/v1/chat/completions", json=body, headers=headers
                )
                for i in range(200)
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    statuses = asyncio.run(burst())
    ok, refused = statuses.count(200), statuses.count(402)
    assert ok + refused == 200, statuses
    assert 15 <= ok <= 21, ok  # ~budget / worst-case estimate; never more than the budget allows

    admin = {"authorization": f"Bearer {ADMIN}"}

    def settled() -> Any:
        for r in replicas:
            runtime_of(r).accounts.ledger._wake.set()
        spend = httpx.get(f"{base}/admin/api/spend", params={"group_by": "key"}, headers=admin).json()["data"]
        rows = [s for s in spend if s["group"] == "burst"]
        # Every request is booked, the refused ones (402) at no cost.
        return rows if rows and sum(r["requests"] for r in rows) == 200 else None

    [booked] = wait_for(settled, timeout_s=10)
    assert booked["cost_usd"] == pytest.approx(ok * cost_one)
    assert booked["cost_usd"] <= budget + cost_one  # overspend bounded by one request's cost
    status = httpx.get(f"{base}/admin/api/keys/{key['id']}", headers=admin).json()["budget"]
    assert status["spent_usd"] == pytest.approx(booked["cost_usd"])  # the budget counts the ledger's numbers
    assert status["remaining_usd"] == pytest.approx(max(0.0, budget - booked["cost_usd"]))


def test_refused_requests_are_booked_for_the_admin_to_see(fake, gateway, tmp_path):
    up = fake()
    models = {"m": [("a", "a-model")], "other": [("a", "a-model")]}
    gw = gateway(
        config_for({"a": up.url}, models=models),
        admin_key=ADMIN,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/g.db",
        ledger_spool_dir=tmp_path / "spool",
    )
    made = new_key(gw.url, rpm=1, models=["m"])
    api = client(gw.url, made["key"])
    api.chat.completions.create(model="m", messages=HI)
    refusals = []
    for model, error in (("m", openai.RateLimitError), ("other", openai.PermissionDeniedError)):
        with pytest.raises(error) as caught:
            api.chat.completions.create(model=model, messages=HI)
        refusals.append(caught.value.response.headers["x-request-id"])
    for request_id, status in zip(refusals, (429, 403), strict=True):
        record = httpx.get(
            f"{gw.url}/v1/generation", params={"id": request_id}, headers={"authorization": f"Bearer {ADMIN}"}
        ).json()["data"]
        assert (record["status"], record["key_id"], record["cost_usd"]) == (status, made["id"], 0.0)
    with pytest.raises(openai.AuthenticationError) as unknown:
        client(gw.url, "gw-no-such-key").chat.completions.create(model="m", messages=HI)
    lookup = httpx.get(
        f"{gw.url}/v1/generation",
        params={"id": unknown.value.response.headers["x-request-id"]},
        headers={"authorization": f"Bearer {ADMIN}"},
    )
    assert lookup.status_code == 404  # unknown keys are not booked
    rows = wait_for(
        lambda: httpx.get(
            f"{gw.url}/admin/api/ledger",
            params={"key_id": made["id"], "status": "429"},
            headers={"authorization": f"Bearer {ADMIN}"},
        ).json()["data"],
        timeout_s=15,
    )
    assert [row["request_id"] for row in rows] == [refusals[0]]


def _next_monday(today: datetime) -> datetime:
    day = today.replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=7 - day.weekday())


def _first_of_next_month(today: datetime) -> datetime:
    day = today.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (day + timedelta(days=32)).replace(day=1)


@pytest.mark.parametrize(
    ("period", "expected"),
    [("week", _next_monday), ("month", _first_of_next_month), ("day", None), ("total", None)],
)
def test_budget_status_says_when_the_period_resets(fake, gateway, tmp_path, period, expected):
    gw = start(gateway, fake, tmp_path)
    before = datetime.now(UTC)
    key = new_key(gw.url, budget_usd=5, budget_period=period)
    status = httpx.get(
        f"{gw.url}/admin/api/keys/{key['id']}", headers={"authorization": f"Bearer {ADMIN}"}
    ).json()["budget"]
    after = datetime.now(UTC)
    if period == "day":
        expected = lambda now: now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)  # noqa: E731
    if expected is None:
        assert status["resets_at"] is None
    else:
        # Either side of a midnight the request may have straddled; normally both are the same.
        allowed = {
            expected(before).isoformat().replace("+00:00", "Z"),
            expected(after).isoformat().replace("+00:00", "Z"),
        }
        assert status["resets_at"] in allowed, (status, allowed)
    assert status["period"] == period and status["spent_usd"] == 0 and status["remaining_usd"] == 5


def test_budget_refusal_names_the_period_and_its_reset(fake, gateway, tmp_path):
    gw = start(gateway, fake, tmp_path)
    api = client(gw.url, new_key(gw.url, name="wk", budget_usd=0.000001, budget_period="week")["key"])
    api.chat.completions.create(model="m", messages=HI)  # spends past the tiny budget

    error = first_refusal(api, openai.APIStatusError, timeout_s=10)
    monday = _next_monday(datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    assert (
        error.status_code == 402 and "weekly budget" in str(error) and f"it resets at {monday}" in str(error)
    )


def _reset_s(value: str) -> float:
    assert value.endswith("s") and len(value.split(".")[-1]) == 4, value  # "12.345s"
    return float(value[:-1])


def test_ratelimit_reset_headers_count_down_the_window(fake, gateway, tmp_path):
    gw = start(gateway, fake, tmp_path, Behaviour(completion_tokens=20))
    api = client(gw.url, new_key(gw.url, rpm=3, tpm=1000)["key"])
    resets = []
    for _ in range(3):
        raw = api.chat.completions.with_raw_response.create(model="m", messages=HI)
        resets.append(_reset_s(raw.headers["x-ratelimit-reset-requests"]))
        assert 0 <= _reset_s(raw.headers["x-ratelimit-reset-tokens"]) <= 60
    # The window is 60 s from the first request: it starts near 60 and only counts down.
    assert 0 < resets[0] <= 60 and resets[2] <= resets[1] <= resets[0], resets
    with pytest.raises(openai.RateLimitError) as caught:
        api.chat.completions.create(model="m", messages=HI)
    headers = caught.value.response.headers
    reset = _reset_s(headers["x-ratelimit-reset-requests"])
    assert 0 < reset <= resets[2] and int(headers["retry-after"]) == max(1, math.ceil(reset))
