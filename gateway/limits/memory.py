"""Limit counters in this process: exact for one replica, and what runs without Redis.

Requests per minute use a sliding log of admission times (never more than `rpm`
requests in any 60 s), tokens per minute a log of (time, tokens): a reservation at admission, corrected
by the difference to the actual count when the request finishes. The log's sum is kept as entries
enter and leave the window, so a check costs the same with 10 or 50,000 requests in the last minute
(summing the log on every check was a quarter of the gateway's CPU at a few hundred requests/s).
Budgets keep, per key and period, the spend settled so far plus the reservations of
requests in flight; a reservation expires if its request never reports back.
The clock is injectable so that a window's ageing can be checked without waiting a minute.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.limits.types import BudgetCheck, WindowCheck

WINDOW_S = 60.0


@dataclass
class _Budget:
    spent: float
    reservations: dict[str, tuple[float, float]] = field(default_factory=dict)

    def reserved(self, now: float) -> float:
        for request_id, (_, expires) in list(self.reservations.items()):
            if expires < now:
                del self.reservations[request_id]
        return sum(amount for amount, _ in self.reservations.values())


class MemoryBackend:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._requests: dict[str, deque[float]] = {}
        self._tokens: dict[str, deque[tuple[float, int]]] = {}
        self._token_sums: dict[str, int] = {}  # the sum of each key's token log
        self._budgets: dict[str, _Budget] = {}

    async def hit_requests(self, key_id: str, limit: int, request_id: str) -> WindowCheck:
        now = self._clock()
        log = self._requests.setdefault(key_id, deque())
        while log and log[0] <= now - WINDOW_S:
            log.popleft()
        if len(log) >= limit:
            return WindowCheck(False, 0, log[0] + WINDOW_S - now)
        log.append(now)
        return WindowCheck(True, limit - len(log), log[0] + WINDOW_S - now)

    def _token_log(self, key_id: str, now: float) -> tuple[deque[tuple[float, int]], int]:
        """The key's token log with what left the window dropped, and its sum."""
        log = self._tokens.setdefault(key_id, deque())
        used = self._token_sums.get(key_id, 0)
        while log and log[0][0] <= now - WINDOW_S:
            used -= log.popleft()[1]
        self._token_sums[key_id] = used
        return log, used

    async def reserve_tokens(self, key_id: str, limit: int, tokens: int) -> WindowCheck:
        now = self._clock()
        log, used = self._token_log(key_id, now)
        if used >= limit:
            return WindowCheck(False, 0, self._tokens_reset(log, used, limit, now))
        if tokens:
            log.append((now, tokens))
            used += tokens
            self._token_sums[key_id] = used
        return WindowCheck(True, max(0, limit - used), self._tokens_reset(log, used, limit, now))

    @staticmethod
    def _tokens_reset(log: deque[tuple[float, int]], used: int, limit: int, now: float) -> float:
        """Seconds until enough tokens age out of the window to drop below the limit."""
        for stamp, tokens in log:
            if used < limit:
                break
            used -= tokens
            if used < limit:
                return stamp + WINDOW_S - now
        return 0.0

    async def add_tokens(self, key_id: str, tokens: int) -> None:
        now = self._clock()
        log, used = self._token_log(key_id, now)
        log.append((now, tokens))
        self._token_sums[key_id] = used + tokens

    async def reserve(
        self,
        bucket: str,
        budget: float,
        amount: float,
        request_id: str,
        ttl_s: float,
        initial: float,
        _expire_at: int,
    ) -> BudgetCheck:
        now = self._clock()
        state = self._budgets.setdefault(bucket, _Budget(initial))
        reserved = state.reserved(now)
        if state.spent + reserved >= budget:
            return BudgetCheck(False, state.spent, reserved)
        state.reservations[request_id] = (amount, now + ttl_s)
        return BudgetCheck(True, state.spent, reserved + amount)

    async def settle(self, bucket: str, request_id: str, cost: float) -> None:
        state = self._budgets.get(bucket)
        if state is None:
            return
        state.reservations.pop(request_id, None)
        state.spent += cost

    async def spent(self, bucket: str) -> float | None:
        state = self._budgets.get(bucket)
        return None if state is None else state.spent

    async def aclose(self) -> None:
        return None
