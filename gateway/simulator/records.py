"""What the simulator saw and did, for tests and benchmarks to assert on.

Times are `time.monotonic()` readings taken in the simulator's event loop, so a
test running the server in another thread of the same process can compare them
with its own monotonic clock (e.g. "the gateway closed the upstream within 100 ms
of the client disconnecting").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

StreamOutcome = Literal[
    "streaming",  # still running
    "done",  # clean end: final chunk and [DONE]
    "client_closed",  # the client went away first
    "died",  # die_after_chunks: connection cut
    "hung",  # hang_after_chunks timed out and the connection was cut
    "garbage",  # garbage_after_chunks: a non-JSON data line, then end of body
    "error_event",  # error_event_after_chunks: vLLM-style error event, then end of body
    "released",  # the server shut down while the stream was open
]


@dataclass
class RecordedRequest:
    """One request as received. `body` is the parsed JSON, or None if it was not JSON."""

    method: str
    path: str
    body: Any
    headers: dict[str, str]
    received_at: float
    client: tuple[str, int] | None = None  # the peer address: one per upstream connection


@dataclass
class StreamRecord:
    """One streamed response, from its first byte to however it ended."""

    started_at: float
    model: str
    chunks_sent: int = 0
    finished_at: float | None = None
    closed_by_client_at: float | None = None
    aborted_at: float | None = None
    outcome: StreamOutcome = "streaming"

    @property
    def ended(self) -> bool:
        return self.outcome != "streaming"
