"""Where a request's time goes: waiting on upstreams, waiting on the client, or in the gateway.

The gateway's own cost per request (`x-gateway-overhead-ms`, the ledger's `overhead_ms`,
the `gateway_overhead_seconds` histogram) is its wall time minus the time it sat waiting
on an upstream or on a slow client. Only the transport knows when it is waiting on an
upstream, and only the outermost middleware knows when the request began, so the two
meet in one `RequestClock` carried by a context variable: tasks a request spawns (a
stream's opening attempt, hedges) copy the context and so share the same clock.

Waits may overlap (a hedge races the first attempt); the clock counts the union of
upstream intervals, not their sum, so the remainder never goes negative.
"""

from __future__ import annotations

from contextvars import ContextVar
from time import perf_counter
from types import TracebackType


class RequestClock:
    """One request's wall clock, split into upstream waits, client waits and the rest."""

    __slots__ = ("_depth", "_since", "client_s", "started", "upstream_s")

    def __init__(self) -> None:
        self.started = perf_counter()
        self.upstream_s = 0.0
        self.client_s = 0.0
        self._depth = 0
        self._since = 0.0

    def __enter__(self) -> None:
        """An upstream wait begins (re-entrant: overlapping waits count once)."""
        if not self._depth:
            self._since = perf_counter()
        self._depth += 1

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._depth -= 1
        if not self._depth:
            self.upstream_s += perf_counter() - self._since

    def overhead_ms(self) -> float:
        """Time so far not spent waiting on an upstream or the client, in milliseconds."""
        now = perf_counter()
        waited = self.upstream_s + self.client_s + (now - self._since if self._depth else 0.0)
        return max(0.0, (now - self.started - waited) * 1000)


class _NoClock:
    """Stands in outside a request (tests calling adapters directly, start-up probes)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_CLOCK = _NoClock()
request_clock: ContextVar[RequestClock | None] = ContextVar("request_clock", default=None)


def upstream_wait() -> RequestClock | _NoClock:
    """`with upstream_wait(): await <upstream I/O>` books the wait to the current request."""
    return request_clock.get() or _NO_CLOCK
