"""The record of each attempt a request made, for headers, metadata and the ledger."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from providers.errors import ProviderError


@dataclass(slots=True)
class Attempt:
    deployment_id: str
    provider: str
    started_at: float
    elapsed_ms: float = 0.0
    outcome: str = "pending"  # "ok", "cancelled" (lost a hedge race) or the error's error_type
    status: int | None = None
    message: str | None = None
    offset_ms: float = 0.0  # when it started, from the start of the request's routing
    hedge: bool = False  # started while an earlier attempt was still waiting for its first byte

    def failed(self, error: ProviderError, elapsed_ms: float) -> None:
        self.outcome = error.error_type
        self.status = error.status
        self.message = error.message
        self.elapsed_ms = elapsed_ms

    def as_dict(self) -> dict[str, object]:
        return {
            "deployment": self.deployment_id,
            "provider": self.provider,
            "outcome": self.outcome,
            "status": self.status,
            "start_ms": round(self.offset_ms, 2),
            "elapsed_ms": round(self.elapsed_ms, 2),
            **({"hedge": True} if self.hedge else {}),
            **({"message": self.message} if self.message else {}),
        }


class AllAttemptsFailed(Exception):
    """Every deployment in the plan failed before producing an answer."""

    def __init__(self, attempts: list[Attempt], last_error: ProviderError | None) -> None:
        super().__init__("all deployments failed")
        self.attempts = attempts
        self.last_error = last_error


@dataclass(slots=True)
class AttemptLog:
    attempts: list[Attempt] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)

    def begin(self, deployment_id: str, provider: str, hedge: bool = False) -> Attempt:
        now = time.monotonic()
        record = Attempt(deployment_id, provider, now, offset_ms=(now - self.started_at) * 1000, hedge=hedge)
        self.attempts.append(record)
        return record

    def route_header(self) -> str:
        """`x-gateway-route`: the chosen deployment last, failed attempts before it."""
        return ", ".join(f"{a.deployment_id};{a.outcome}" for a in self.attempts)
