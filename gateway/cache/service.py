"""The cache step of the chat path: decide, look up, book a hit, store a clean answer.

Built once in the lifespan (`open_cache`). The chat pipeline calls `decide` before the
key's limits (a bad `cache` object is a 400 and costs nothing), `lookup` after them,
and on a miss `store_answer` (JSON) or `stream_finisher` (streams). Stores run as
background tasks once the answer is complete, never before the client has it.

A failing store (Redis down, a Qdrant or embedder error) never fails a request: the
request goes on uncached, the failure is logged once per outage and counted in
`/metrics`, and that store is left alone for `RETRY_AFTER_S` before it is tried again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson

from gateway.cache.config import CacheConfig, ModelCacheConfig
from gateway.cache.exact import CacheUnavailable, ExactStore, MemoryStore, RedisStore
from gateway.cache.policy import Ticket, decide
from gateway.cache.replay import entry_from_answer, entry_from_stream
from gateway.cache.semantic import SemanticIndex
from gateway.records import RequestRecord

log = logging.getLogger("gateway.cache")

RETRY_AFTER_S = 1.0
CLEAN_FINISH = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


class CacheService:
    def __init__(
        self,
        config: CacheConfig,
        models: dict[str, ModelCacheConfig],
        exact: ExactStore,
        semantic: SemanticIndex | None,
    ) -> None:
        self.config = config
        self.models = models
        self.shared = {key: group.name for group in config.shared for key in group.keys}
        self.exact = exact
        self.semantic = semantic
        self.lookups: Counter[tuple[str, str]] = Counter()  # (model, result) -> count
        self.errors: Counter[str] = Counter()  # store -> failures
        self.stored: Counter[str] = Counter()  # "exact" / "semantic" -> writes
        self._down_until: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ per request

    def decide(
        self,
        body: dict[str, Any],
        headers: Any,
        who: tuple[str | None, str],
        model: str,
        deny: bool,
        rag: Any,
    ) -> Ticket | None:
        """None (at the cost of one dictionary test) when neither the model nor the request asks."""
        if not self.models and "cache" not in body:
            return None
        asked_rag = rag.model_dump(exclude_none=True) if rag is not None else None
        return decide(self.config, self.models, self.shared, body, headers, who, model, deny, asked_rag)

    async def lookup(self, ticket: Ticket, record: RequestRecord) -> dict[str, Any] | None:
        """The stored entry for this request, if any; sets `ticket.result` and `record.cache`."""
        record.cache = "miss"
        if not ticket.read:
            self.lookups[(ticket.model, "bypass")] += 1
            return None
        found = await self._guarded(
            "exact", lambda: self.exact.get(ticket.namespace, ticket.model, ticket.key)
        )
        if found is not None:
            ticket.result = "hit"
        elif ticket.context is not None and ticket.text is not None and self.semantic is not None:
            semantic, context, text = self.semantic, ticket.context, ticket.text
            hit = await self._guarded(
                "semantic", lambda: semantic.lookup(ticket.namespace, context, text, ticket.threshold)
            )
            if hit is not None:
                found, ticket.result, ticket.score = hit.entry, "semantic-hit", hit.score
        self.lookups[(ticket.model, ticket.result.replace("-", "_"))] += 1
        record.cache = ticket.result
        return orjson.loads(found) if found is not None else None

    def book_hit(
        self, ticket: Ticket, record: RequestRecord, entry: dict[str, Any], started_at: float
    ) -> None:
        record.cost_usd = 0.0
        record.cost_saved_usd = float(entry.get("cost_usd") or 0.0)
        record.finish_reason = entry.get("finish_reason")
        record.latency_ms = record.ttft_ms = (time.monotonic() - started_at) * 1000
        record.provider = "cache"

    def store_answer(self, ticket: Ticket, answer: dict[str, Any], cost_usd: float) -> None:
        """Store a JSON answer after it is sent (the entry is encoded now, written later)."""
        if not ticket.write or ticket.result != "miss":
            return
        entry = entry_from_answer(answer, cost_usd)
        if entry is not None:
            self._spawn(self._write(ticket, entry))

    def stream_finisher(
        self, ticket: Ticket, ctx: Any, finish: Callable[[RequestRecord], None]
    ) -> Callable[[RequestRecord], None]:
        """Wraps the stream's booking: once booked, a stream that ended cleanly is stored.

        Never one that ended in an error chunk, was cancelled by its client or by a
        shutdown, or carried tool calls (their arguments are not kept by the relay).
        """

        def finished(record: RequestRecord) -> None:
            finish(record)
            if not ticket.write or ticket.result != "miss" or ctx.in_tool_call or not ctx.segments:
                return
            if record.error or record.cancelled or record.status != 200:
                return
            if record.finish_reason not in CLEAN_FINISH:
                return
            entry = entry_from_stream(
                ctx.segments[-1].model,
                ctx.answer_so_far,
                record.finish_reason,
                record.prompt_tokens,
                record.completion_tokens,
                record.cost_usd,
            )
            self._spawn(self._write(ticket, entry))

        return finished

    async def _write(self, ticket: Ticket, entry: bytes) -> None:
        t = ticket
        if await self._guarded(
            "exact", lambda: _done(self.exact.put(t.namespace, t.model, t.key, entry, t.ttl_s))
        ):
            self.stored["exact"] += 1
        semantic, context, text = self.semantic, t.context, t.text
        if context is not None and text is not None and semantic is not None:
            put = lambda: _done(semantic.put(t.namespace, t.model, t.key, context, text, entry, t.ttl_s))  # noqa: E731
            if await self._guarded("semantic", put):
                self.stored["semantic"] += 1

    async def _guarded(self, store: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run a store call; on failure log (once per outage), count, and answer None."""
        now = time.monotonic()
        if self._down_until.get(store, 0.0) > now:
            self.errors[store] += 1
            return None
        try:
            result = await call()
        except CacheUnavailable as exc:
            if store not in self._down_until:
                log.warning("cache: %s store failing (%s); serving uncached", store, exc)
            self._down_until[store] = now + RETRY_AFTER_S
            self.errors[store] += 1
            return None
        if self._down_until.pop(store, None) is not None:
            log.info("cache: %s store answering again", store)
        return result

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ admin

    async def purge(self, namespace: str | None = None, model: str | None = None) -> dict[str, Any]:
        """Forget entries; raises CacheUnavailable when a store cannot be reached."""
        removed = await self.exact.purge(namespace, model)
        if self.semantic is not None:
            await self.semantic.purge(namespace, model)
        return {"exact_entries_removed": removed}

    async def stats(self) -> dict[str, Any]:
        exact = await _or_error(self.exact.stats(), self.exact.name)
        semantic = await _or_error(self.semantic.stats(), "qdrant") if self.semantic is not None else None
        by_result: Counter[str] = Counter()
        for (_, result), n in self.lookups.items():
            by_result[result] += n
        answered = by_result["hit"] + by_result["semantic_hit"] + by_result["miss"]
        return {
            "exact": exact,
            "semantic": semantic,
            "lookups": dict(by_result),
            "hit_rate": round((by_result["hit"] + by_result["semantic_hit"]) / answered, 4)
            if answered
            else None,
            "stored": dict(self.stored),
            "errors": dict(self.errors),
            "models": {name: m.model_dump() for name, m in self.models.items()},
        }

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)
        await self.exact.aclose()


async def _or_error(call: Coroutine[Any, Any, dict[str, Any]], backend: str) -> dict[str, Any]:
    """A store's statistics, or what keeps it from answering (stats must work while a store is down)."""
    try:
        return await call
    except CacheUnavailable as exc:
        return {"backend": backend, "error": str(exc)}


async def _done(call: Coroutine[Any, Any, None]) -> bool:
    await call
    return True


def open_cache(runtime: Any) -> CacheService:
    """Called once RAG's service exists (the semantic index shares its store and embedder)."""
    config = runtime.config
    settings = runtime.settings
    prefix = config.routing.state_prefix
    exact: ExactStore = (
        RedisStore(settings.redis_url, prefix) if settings.redis_url else MemoryStore(config.cache.max_bytes)
    )
    service = CacheService(
        config.cache,
        {m.name: m.cache for m in config.models if m.cache is not None},
        exact,
        SemanticIndex(runtime.rag, prefix),
    )
    runtime.closers.append(service.aclose)
    if runtime.telemetry is not None:
        from gateway.cache.metrics import CacheCollector

        runtime.telemetry.registry.register(CacheCollector(service))
    return service
