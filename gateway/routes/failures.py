"""Booking a request that failed or was refused, and the error its client gets.

Shared by the chat and embeddings routes so a failure is recorded once, the same way,
with the status the client actually receives. Requests a key's limits refuse (402,
403, 429) are booked too, at no cost, so an admin can see who is being throttled;
401s are not: an unknown key has no owner, and booking them would let anyone fill
the ledger.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request

from gateway.accounts import admit
from gateway.auth import Principal
from gateway.errors import GatewayError
from gateway.records import RequestRecord
from gateway.runtime import Runtime
from providers.errors import ProviderError
from router_policies.attempts import AttemptLog
from router_policies.deployment import ModelGroup


def with_route(error: GatewayError, log: AttemptLog) -> GatewayError:
    """Errors carry `x-gateway-route` too: which deployments were tried, and how each failed."""
    error.headers["x-gateway-route"] = log.route_header()
    return error


def book_failure(
    runtime: Runtime,
    record: RequestRecord,
    log: AttemptLog,
    started_at: float,
    cause: ProviderError | None,
    error: GatewayError,
) -> GatewayError:
    """Book a failed request with the status the client is about to get; return that error."""
    record.status = error.status
    record.error = cause.error_type if cause else "no_deployment"
    record.latency_ms = (time.monotonic() - started_at) * 1000
    record.attempts = [a.as_dict() for a in log.attempts]
    runtime.finish(record)
    return with_route(error, log)


async def admit_or_book(
    request: Request,
    runtime: Runtime,
    principal: Principal,
    group: ModelGroup,
    body: dict[str, Any],
    record: RequestRecord,
) -> None:
    """The key's limits and budget (see `accounts.admit`); a refusal is booked, then raised."""
    try:
        await admit(request, runtime, principal, group, body)
    except GatewayError as refusal:
        record.status = refusal.status
        record.error = refusal.code or "refused"
        runtime.finish(record)
        raise
