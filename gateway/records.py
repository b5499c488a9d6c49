"""What the gateway remembers about each finished request.

A `RequestRecord` is produced once per request, after its response, and handed to
every registered sink (the generation store behind `/v1/generation`, the ledger).
Sinks must not block: they enqueue, and write elsewhere.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    model: str
    created_at: float = field(default_factory=time.time)
    key_id: str | None = None
    key_name: str | None = None  # for log lines; never the key itself
    deployment: str | None = None
    provider: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_estimated: bool = False
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: int = 200
    finish_reason: str | None = None
    streamed: bool = False
    cancelled: bool = False
    error: str | None = None
    policy: str | None = None
    kind: str = "chat"
    # Prompt monitoring: set (to the client's messages) only for requests that are kept,
    # then the answer is added; see gateway.telemetry.prompts.
    prompt: dict[str, Any] | None = None
    # RAG: how long retrieval took, and the chunks put into the prompt ({id, score, source}).
    retrieval_ms: float | None = None
    rag_chunks: list[dict[str, Any]] | None = None
    # Response cache: "hit", "semantic-hit" or "miss" when the request was cacheable (else None),
    # and on a hit what the stored answer had cost (the request itself costs 0).
    cache: str | None = None
    cost_saved_usd: float | None = None
    # Time spent in the gateway itself, upstream and client waits excluded (`providers.clock`),
    # up to when the request was booked: for a stream, its end.
    overhead_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RecordSink(Protocol):
    def record(self, record: RequestRecord) -> None: ...


class RecentRecords:
    """The last `capacity` records by request id, in memory (one replica's view).

    Each is kept as its owner's key id and its JSON (`as_dict`'s, from orjson in a couple of
    microseconds), not as the record: ten thousand records and their attempt lists were
    two thirds of the objects the cycle collector walked on every full collection, each a
    stall of several milliseconds for every request in flight. Bytes are not walked.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._records: OrderedDict[str, tuple[str | None, bytes]] = OrderedDict()

    def record(self, record: RequestRecord) -> None:
        self._records[record.request_id] = (record.key_id, orjson.dumps(record))
        if len(self._records) > self._capacity:
            self._records.popitem(last=False)

    def get(self, request_id: str) -> tuple[str | None, bytes] | None:
        """The record's key id and its JSON object, or None."""
        return self._records.get(request_id)
