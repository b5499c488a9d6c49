"""Results shared by the limit backends (in-process and Redis)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class WindowCheck:
    allowed: bool
    remaining: int
    reset_s: float


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    allowed: bool
    spent: float
    reserved: float


class LimitBackend(Protocol):
    async def hit_requests(self, key_id: str, limit: int, request_id: str) -> WindowCheck: ...
    async def reserve_tokens(self, key_id: str, limit: int, tokens: int) -> WindowCheck:
        """Admit if fewer than `limit` tokens are counted in the window, then count `tokens` more."""
        ...

    async def add_tokens(self, key_id: str, tokens: int) -> None:
        """Count `tokens` now; negative when a request used less than it reserved."""
        ...

    async def reserve(
        self,
        bucket: str,
        budget: float,
        amount: float,
        request_id: str,
        ttl_s: float,
        initial: float,
        expire_at: int,
    ) -> BudgetCheck: ...
    async def settle(self, bucket: str, request_id: str, cost: float) -> None: ...
    async def spent(self, bucket: str) -> float | None: ...
    async def aclose(self) -> None: ...
