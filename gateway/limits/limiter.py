"""Admission control per virtual key: model allow-list, rpm, tpm and budget.

`admit` runs after planning, before anything is sent. Budgets and tokens per minute
use reserve-then-settle: an admitted request reserves its worst case (prompt estimate
plus `max_tokens`, or the configured default, and for budgets the dearest price among
the deployments its plan can reach), and a key is refused once what is settled plus
what is reserved reaches its limit, so concurrent requests cannot all slip past the
same remaining dollar or token: they overshoot by at most one request. When the
request's record arrives (`record`, a RecordSink) each reservation is replaced by the
actual figure — the very numbers the ledger books. Without a key nothing is limited.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.keys import KeyRecord
from gateway.limits.periods import ADJECTIVE, period_end, period_start
from gateway.limits.types import LimitBackend
from gateway.records import RequestRecord

log = logging.getLogger("gateway.limits")

DEFAULT_COMPLETION_TOKENS = 1024
RESERVATION_TTL_S = 900.0


@dataclass(slots=True)
class Admission:
    """One admitted request: the headers to send, and the reservation to settle."""

    request_id: str
    key: KeyRecord | None
    headers: dict[str, str] = field(default_factory=dict)
    bucket: str | None = None
    tokens_reserved: int = 0


def estimate_tokens(
    body: dict[str, Any], default_completion: int = DEFAULT_COMPLETION_TOKENS
) -> tuple[int, int]:
    """Worst-case (prompt, completion) tokens: ~4 characters per prompt token, plus the completion cap."""
    prompt = body.get("messages", body.get("input", ""))
    prompt_tokens = len(orjson.dumps(prompt)) // 4 + 1
    if "input" in body and "messages" not in body:
        return prompt_tokens, 0
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    return prompt_tokens, cap if isinstance(cap, int) and cap > 0 else default_completion


def estimate_cost(
    body: dict[str, Any], prices: tuple[float, float], default_completion: int = DEFAULT_COMPLETION_TOKENS
) -> float:
    """Worst-case USD for a request at the given (input, output) prices per million tokens."""
    prompt_tokens, completion = estimate_tokens(body, default_completion)
    return (prompt_tokens * prices[0] + completion * prices[1]) / 1e6


def _check_allowed(key: KeyRecord, models: Sequence[str]) -> None:
    """Every model the request can reach (its `model`, each `models[]` fallback) must be allowed."""
    if not key.models:
        return
    for i, model in enumerate(models):
        if model not in key.models:
            raise GatewayError(
                403,
                f"this key may not use model {model!r}; allowed: {', '.join(key.models)}",
                code="model_not_allowed",
                param="model" if i == 0 else "models",
            )


def _seconds(value: float) -> str:
    return str(max(1, math.ceil(value)))


class Limiter:
    def __init__(
        self,
        backend: LimitBackend,
        ledger_spend: Callable[[str, datetime], Awaitable[float]],
        reservation_ttl_s: float = RESERVATION_TTL_S,
        default_completion_tokens: int = DEFAULT_COMPLETION_TOKENS,
    ) -> None:
        self.backend = backend
        self._default_completion = default_completion_tokens
        self._ledger_spend = ledger_spend
        self._ttl_s = reservation_ttl_s
        self._initial: dict[str, float] = {}
        self.in_flight: dict[str, Admission] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def admit(
        self,
        key: KeyRecord | None,
        models: Sequence[str],
        body: dict[str, Any],
        request_id: str,
        prices: tuple[float, float],
    ) -> Admission:
        admission = Admission(request_id, key)
        if key is not None:
            _check_allowed(key, models)
            try:
                prompt, completion = (
                    estimate_tokens(body, self._default_completion)
                    if key.tpm or key.budget_usd is not None
                    else (0, 0)
                )
                await self._rates(key, admission, prompt + completion)
                if key.budget_usd is not None:
                    cost = (prompt * prices[0] + completion * prices[1]) / 1e6
                    await self._reserve(key, admission, cost)
            except GatewayError:
                if admission.tokens_reserved:  # refused after reserving tokens (402): give them back
                    self._spawn(self._settle(admission, 0.0, 0))
                raise
            except Exception as exc:  # Redis away: serve rather than refuse everyone
                log.warning("limit check for %s failed open: %s: %s", key.id, type(exc).__name__, exc)
        self.in_flight[request_id] = admission
        return admission

    async def _rates(self, key: KeyRecord, admission: Admission, tokens: int) -> None:
        headers = admission.headers
        if key.rpm:
            check = await self.backend.hit_requests(key.id, key.rpm, admission.request_id)
            headers["x-ratelimit-limit-requests"] = str(key.rpm)
            headers["x-ratelimit-remaining-requests"] = str(check.remaining)
            headers["x-ratelimit-reset-requests"] = f"{check.reset_s:.3f}s"
            if not check.allowed:
                raise self._too_many(key, "requests", key.rpm, check.reset_s, headers)
        if key.tpm:
            check = await self.backend.reserve_tokens(key.id, key.tpm, tokens)
            headers["x-ratelimit-limit-tokens"] = str(key.tpm)
            headers["x-ratelimit-remaining-tokens"] = str(check.remaining)
            headers["x-ratelimit-reset-tokens"] = f"{check.reset_s:.3f}s"
            if not check.allowed:
                raise self._too_many(key, "tokens", key.tpm, check.reset_s, headers)
            admission.tokens_reserved = tokens

    @staticmethod
    def _too_many(
        key: KeyRecord, what: str, limit: int, reset_s: float, headers: dict[str, str]
    ) -> GatewayError:
        return GatewayError(
            429,
            f"rate limit reached for key '{key.name}': {limit} {what} per minute; retry in {_seconds(reset_s)} s",
            code="rate_limit_exceeded",
            headers={**headers, "retry-after": _seconds(reset_s)},
        )

    async def _reserve(self, key: KeyRecord, admission: Admission, amount: float) -> None:
        assert key.budget_usd is not None
        period = key.budget_period or "month"
        now = datetime.now(UTC)
        start, end = period_start(period, now), period_end(period, now)
        bucket = f"{key.id}:{period}:{int(start.timestamp())}"
        initial = await self._initial_spend(bucket, key.id, start)
        expire_at = int((end + timedelta(days=2)).timestamp()) if end else 0
        check = await self.backend.reserve(
            bucket, key.budget_usd, amount, admission.request_id, self._ttl_s, initial, expire_at
        )
        if not check.allowed:
            resets = f"it resets at {end.isoformat().replace('+00:00', 'Z')}" if end else "it does not reset"
            raise GatewayError(
                402,
                f"budget exhausted for key '{key.name}': ${check.spent:.6f} spent of its {ADJECTIVE[period]} "
                f"budget of ${key.budget_usd:.2f} (${check.reserved:.6f} held by requests in flight); {resets}",
                code="budget_exceeded",
                headers=dict(admission.headers),
            )
        admission.bucket = bucket

    async def _initial_spend(self, bucket: str, key_id: str, start: datetime) -> float:
        """The ledger's spend for this key and period, read once per period and process."""
        if bucket not in self._initial:
            try:
                self._initial[bucket] = await self._ledger_spend(key_id, start)
            except Exception as exc:
                raise GatewayError(
                    503,
                    "budget state is unavailable (database unreachable); retry shortly",
                    code="budget_unavailable",
                ) from exc
        return self._initial[bucket]

    def record(self, record: RequestRecord) -> None:
        """RecordSink: replace the reservation by the actual cost and count the tokens."""
        admission = self.in_flight.pop(record.request_id, None)
        if admission is None or admission.key is None:
            return
        tokens = record.prompt_tokens + record.completion_tokens
        self._spawn(self._settle(admission, record.cost_usd, tokens))

    def release(self, request_id: str) -> None:
        """The request ended without a record (an unexpected error): free its reservations."""
        admission = self.in_flight.pop(request_id, None)
        if admission is not None and (admission.bucket is not None or admission.tokens_reserved):
            self._spawn(self._settle(admission, 0.0, 0))

    async def _settle(self, admission: Admission, cost: float, tokens: int) -> None:
        assert admission.key is not None
        try:
            if admission.bucket is not None:
                await self.backend.settle(admission.bucket, admission.request_id, cost)
            if admission.key.tpm and tokens != admission.tokens_reserved:
                await self.backend.add_tokens(admission.key.id, tokens - admission.tokens_reserved)
        except Exception as exc:
            log.warning("settling %s failed: %s: %s", admission.request_id, type(exc).__name__, exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float) -> None:
        """On shutdown: wait (bounded) for in-flight requests to report, then for settlements."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight and time.monotonic() < deadline:  # noqa: ASYNC110 - records arrive via a sync sink
            await asyncio.sleep(0.02)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=max(0.1, deadline - time.monotonic()))

    async def spent(self, key: KeyRecord) -> tuple[float, datetime | None]:
        """Current-period spend for budget status: live counter if this process has one, else the ledger."""
        period = key.budget_period or "month"
        now = datetime.now(UTC)
        start = period_start(period, now)
        live = await self.backend.spent(f"{key.id}:{period}:{int(start.timestamp())}")
        value = live if live is not None else await self._ledger_spend(key.id, start)
        return value, period_end(period, now)
