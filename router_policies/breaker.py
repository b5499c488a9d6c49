"""A circuit breaker per deployment.

Closed: requests flow; consecutive failures are counted. It opens after
`failure_threshold` consecutive failures (for `cooldown_s`, doubling each time it
re-opens, up to `max_cooldown_s`), or at once when the upstream says how long to go
away (a 429 or 503 with Retry-After: open exactly that long). Once the time is up it
is half-open: exactly one request (the probe) is let through; its success closes the
breaker, its failure opens it again.

Times are clock seconds (wall clock by default) so that an opening can be shared with
other replicas through the state store, which sets `open_until` directly.

A `shared` breaker (the Redis store sets it while Redis answers) half-opens only on the
replica holding the probe lease (`lease`): every other replica keeps treating it as open
until the probe's result reaches it, so N replicas send one probe, not N.
"""

from __future__ import annotations

from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(slots=True, frozen=True)
class BreakerSettings:
    failure_threshold: int = 3
    cooldown_s: float = 10.0
    max_cooldown_s: float = 300.0


class CircuitBreaker:
    __slots__ = (
        "_probing",
        "failures",
        "lease",
        "open_until",
        "opened_times",
        "reason",
        "settings",
        "shared",
    )

    def __init__(self, settings: BreakerSettings | None = None) -> None:
        self.settings = settings or BreakerSettings()
        self.failures = 0
        self.open_until = 0.0
        self.opened_times = 0
        self.reason = ""
        self._probing = False
        self.shared = False  # half-open only with the probe lease (set by a shared store)
        self.lease = False  # this replica may send the probe

    @property
    def probing(self) -> bool:
        return self._probing

    def state(self, now: float) -> str:
        if self.open_until == 0.0:
            return CLOSED
        if now < self.open_until or (self.shared and not self.lease):
            return OPEN
        return HALF_OPEN

    def allows(self, now: float) -> bool:
        """May a request go to this deployment now? (Half-open: only if no probe is out.)"""
        state = self.state(now)
        return state == CLOSED or (state == HALF_OPEN and not self._probing)

    def on_attempt(self, now: float) -> None:
        if self.state(now) == HALF_OPEN:
            self._probing = True

    def on_success(self) -> None:
        self.failures = 0
        self.open_until = 0.0
        self.opened_times = 0
        self.reason = ""
        self._probing = False
        self.lease = False

    def on_release(self) -> None:
        """The attempt ended without a verdict (cancelled): free the probe slot."""
        self._probing = False

    def on_failure(self, now: float, retry_after_s: float | None, reason: str) -> bool:
        """Count a failure; return True when this opened (or re-opened) the breaker."""
        self.failures += 1
        was_half_open = self.state(now) == HALF_OPEN
        self._probing = False
        self.lease = False
        if retry_after_s is not None and retry_after_s > 0:
            return self.open_for(now, retry_after_s, f"{reason}; Retry-After {retry_after_s:g}s")
        if was_half_open or self.failures >= self.settings.failure_threshold:
            cooldown = min(self.settings.cooldown_s * 2**self.opened_times, self.settings.max_cooldown_s)
            return self.open_for(now, cooldown, f"{self.failures} consecutive failures ({reason})")
        return False

    def open_for(self, now: float, seconds: float, reason: str) -> bool:
        until = now + seconds
        if until <= self.open_until:
            return False
        self.open_until = until
        self.opened_times += 1
        self.reason = reason
        return True

    def due(self, now: float) -> bool:
        """Opened and its time is up: a probe (or another replica's result) is awaited."""
        return self.open_until != 0.0 and now >= self.open_until

    def adopt(self, open_until: float, reason: str, opened_times: int = 0) -> None:
        """Take an opening published by another replica, if it reaches further than ours.

        Its count of openings comes along, so whichever replica probes next backs off as
        long as the one that opened it would have.
        """
        if open_until > self.open_until:
            self.open_until = open_until
            self.reason = reason
            self.opened_times = max(self.opened_times, opened_times)
            self._probing = False
            self.lease = False
