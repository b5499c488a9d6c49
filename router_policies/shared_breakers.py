"""Breakers across replicas: openings and closings published, one probe per recovery.

Part of the Redis store (redis_store.py), which owns the connection and the sync; this
class owns what the breakers put into the sync's pipeline and takes out of its answers.

An opening is published with its count of openings, so the next back-off is the same
whichever replica probes. When a shared breaker's open time is up, every replica asks
Redis who probes (the `PROBE` script, one step on the server): one takes the probe lease
(`SET NX PX`) and half-opens; the others stay open. The holder renews the lease while its
probe is out, so it lapses if that replica dies, and gives it up after a whole lease
without sending one, then leaves it to the others for another lease, so a replica
without traffic holds nobody back. The probe's success
publishes a "closed" marker (every waiting replica closes), its failure the next opening
(every replica adopts it); the lease is released after either, in the same round trip.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router_policies import shared_state as wire
from router_policies.breaker import CircuitBreaker
from router_policies.store import DeploymentState

CLOSED_TTL_MS = 60_000  # how long a probe's success stays readable by replicas that wait for it

Sent = tuple[list[str], list[str], list[str]]


class SharedBreakers:
    def __init__(self, prefix: str, replica: str, lease_s: float) -> None:
        self.prefix = prefix
        self.replica = replica
        self.lease_s = lease_s
        self._opened: set[str] = set()  # openings not yet published
        self._closed: dict[str, float] = {}  # deployment → when a probe closed it here
        self._releases: set[str] = set()  # probe leases to give back
        self._lease_at: dict[str, float] = {}  # deployment → when this replica took its lease
        self._resting: dict[str, float] = {}  # deployment → until when it leaves the lease to others

    def _key(self, kind: str, ident: str) -> str:
        return f"{self.prefix}:{kind}:{ident}"

    # -- what the request path reports ---------------------------------------------------------

    def opened(self, ident: str) -> None:
        self._opened.add(ident)

    def closed(self, ident: str, now: float, had_lease: bool) -> None:
        self._closed[ident] = now
        self._lease_done(ident, had_lease)

    def probe_failed(self, ident: str) -> None:
        self._lease_done(ident, True)

    def _lease_done(self, ident: str, had_lease: bool) -> None:
        self._lease_at.pop(ident, None)
        if had_lease:
            self._releases.add(ident)

    # -- the sync ----------------------------------------------------------------------------

    def queue_publications(self, pipe: Any, states: Mapping[str, DeploymentState], now: float) -> Sent:
        """Openings, then closings, then lease releases: a replica waiting for a probe's result
        never sees the lease gone before the result is there."""
        opened = list(self._opened)
        for ident in opened:
            breaker = states[ident].breaker
            ttl_ms = int((breaker.open_until - now) * 1000)
            if ttl_ms > 0:
                value = wire.encode_opening(breaker.open_until, breaker.opened_times, breaker.reason)
                pipe.set(self._key("breaker", ident), value, px=ttl_ms)
        closed = list(self._closed)
        for ident in closed:
            pipe.set(self._key("closed", ident), repr(self._closed[ident]), px=CLOSED_TTL_MS)
        released = list(self._releases)
        for ident in released:
            pipe.eval(wire.RELEASE, 1, self._key("probe", ident), self.replica)
        return opened, closed, released

    def published(self, sent: Sent) -> None:
        opened, closed, released = sent
        self._opened.difference_update(opened)
        for ident in closed:
            self._closed.pop(ident, None)
        self._releases.difference_update(released)

    def queue_reads(self, pipe: Any, idents: list[str]) -> None:
        for ident in idents:
            pipe.get(self._key("breaker", ident))

    def queue_probes(self, pipe: Any, states: Mapping[str, DeploymentState], now: float) -> list[str]:
        """Every shared breaker whose open time is up asks who probes (see `PROBE`)."""
        due = []
        for ident, state in states.items():
            breaker = state.breaker
            if not (breaker.shared and breaker.due(now)):
                continue
            taken_at = self._lease_at.get(ident)
            if taken_at is not None and not breaker.probing and now - taken_at >= self.lease_s:
                del self._lease_at[ident]  # a whole lease and no request to probe with
                self._resting[ident] = now + self.lease_s
            keep = breaker.probing or ident in self._lease_at
            take = now >= self._resting.get(ident, 0.0)
            keys = (self._key("breaker", ident), self._key("closed", ident), self._key("probe", ident))
            args = (self.replica, repr(breaker.open_until), int(self.lease_s * 1000), int(keep), int(take))
            pipe.eval(wire.PROBE, 3, *keys, *args)
            due.append(ident)
        return due

    def apply_probes(
        self, states: Mapping[str, DeploymentState], due: list[str], results: list[Any], now: float
    ) -> None:
        for ident, (verdict, value) in zip(due, results, strict=True):
            breaker = states[ident].breaker
            if verdict == "open":
                adopt(breaker, value)
            elif verdict == "closed":
                breaker.on_success()
                self._lease_at.pop(ident, None)
            elif verdict == "probe":
                if not breaker.lease:
                    self._lease_at[ident] = now
                breaker.lease = True
            else:
                breaker.lease = False
                self._lease_at.pop(ident, None)

    def share(self, states: Mapping[str, DeploymentState], shared: bool) -> None:
        """With Redis, half-open breakers wait for the one probe; without, each replica probes."""
        for state in states.values():
            state.breaker.shared = shared
            if not shared:
                state.breaker.lease = False
        if not shared:
            self._lease_at.clear()
            self._resting.clear()


def adopt(breaker: CircuitBreaker, value: str | None) -> None:
    """Take a published opening (a no-op unless it reaches further than the breaker's own)."""
    opening = wire.decode_opening(value) if value else None
    if opening is not None:
        until, times, reason = opening
        breaker.adopt(until, f"{reason} (seen by another replica)", times)
