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
from gateway.errors import GatewayError, from_all_failed, from_provider_error
from gateway.records import RequestRecord
from gateway.runtime import Runtime
from gateway.telemetry.tracing import child_span
from providers.errors import ProviderError
from router_policies.attempts import AllAttemptsFailed, AttemptLog
from router_policies.router import Plan


def book_failure(
    runtime: Runtime,
    record: RequestRecord,
    log: AttemptLog,
    started_at: float,
    failure: AllAttemptsFailed | ProviderError,
    model: str,
) -> GatewayError:
    """Book a failed request with the status the client is about to get; return that error.

    Every deployment failing maps to 502/503/504; a non-retryable upstream error (the
    client's own request at fault) goes back as it is. Either way the error carries
    `x-gateway-route`: which deployments were tried, and how each failed.
    """
    if isinstance(failure, AllAttemptsFailed):
        cause, error = failure.last_error, from_all_failed(failure, model)
    else:
        cause, error = failure, from_provider_error(failure)
    record.status = error.status
    record.error = cause.error_type if cause else "no_deployment"
    record.latency_ms = (time.monotonic() - started_at) * 1000
    record.attempts = [a.as_dict() for a in log.attempts]
    runtime.finish(record)
    error.headers["x-gateway-route"] = log.route_header()
    return error


async def admit_or_book(
    request: Request,
    runtime: Runtime,
    principal: Principal,
    plan: Plan,
    body: dict[str, Any],
    record: RequestRecord,
) -> None:
    """The key's limits and budget (see `accounts.admit`); a refusal is booked, then raised."""
    try:
        with child_span(
            "gateway.admit", **{"gateway.key_name": principal.name, "gateway.model": plan.groups[0].name}
        ):
            await admit(request, runtime, principal, plan, body)
    except GatewayError as refusal:
        record.status = refusal.status
        record.error = refusal.code or "refused"
        runtime.finish(record)
        raise
