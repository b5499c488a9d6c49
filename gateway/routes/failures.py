"""Booking a request that failed, and the error its client gets.

Shared by the chat and embeddings routes so a failure is recorded once, the same way,
with the status the client actually receives.
"""

from __future__ import annotations

import time

from gateway.errors import GatewayError
from gateway.records import RequestRecord
from gateway.runtime import Runtime
from providers.errors import ProviderError
from router_policies.attempts import AttemptLog


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
