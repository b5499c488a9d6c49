"""Stored responses for `previous_response_id`: per key, for a retention period.

A Responses request that continues an earlier one sends only its new input; the
gateway keeps each stored response's whole conversation (as chat messages) so the
next turn can be translated without the client resending it. Entries belong to the
key that created them — another key asking for one gets the same 404 as for an id
that never existed — and expire after `GATEWAY_RESPONSES_RETENTION_S`. `store:
false` keeps nothing.

Two stores behind one async interface: in this process (`MemoryResponseStore`, the
oldest dropped beyond `capacity`; a continuation must reach the same replica and
does not survive a restart), or in Redis when `REDIS_URL` is set
(`gateway.responses_redis.RedisResponseStore`), so any replica continues any
conversation. A response is stored before the client sees it complete, so a
continuation sent the moment the answer arrives always finds it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.errors import GatewayError

JSON = dict[str, Any]


@dataclass(slots=True)
class StoredResponse:
    owner: str
    expires_at: float
    conversation: list[JSON]  # every message up to and including this response's output
    response: JSON


class ResponseStore(Protocol):
    async def put(self, owner: str, conversation: list[JSON], response: JSON) -> None: ...

    async def get(self, owner: str, response_id: str) -> StoredResponse | None: ...

    async def delete(self, owner: str, response_id: str) -> bool: ...

    async def aclose(self) -> None: ...


async def require(
    store: ResponseStore, owner: str, response_id: Any, param: str = "previous_response_id"
) -> StoredResponse:
    """The stored response, or the 404 OpenAI gives for an unknown (or expired, or foreign) id."""
    entry = await store.get(owner, response_id) if isinstance(response_id, str) else None
    if entry is None:
        raise GatewayError(
            404,
            f"no stored response with id {response_id!r} (unknown, expired, or stored with store: false)",
            code="response_not_found",
            param=param,
        )
    return entry


class MemoryResponseStore:
    """Bounded, expiring, per-owner, in this process; see the module docstring."""

    def __init__(self, retention_s: float, capacity: int = 10_000) -> None:
        self.retention_s = retention_s
        self.capacity = capacity
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()

    async def put(self, owner: str, conversation: list[JSON], response: JSON) -> None:
        entry = StoredResponse(owner, time.time() + self.retention_s, conversation, response)
        self._entries[response["id"]] = entry
        self._entries.move_to_end(response["id"])
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    async def get(self, owner: str, response_id: str) -> StoredResponse | None:
        entry = self._entries.get(response_id)
        if entry is None:
            return None
        if entry.expires_at <= time.time():
            del self._entries[response_id]
            return None
        return entry if entry.owner == owner else None

    async def delete(self, owner: str, response_id: str) -> bool:
        if await self.get(owner, response_id) is None:
            return False
        del self._entries[response_id]
        return True

    async def aclose(self) -> None:
        self._entries.clear()
