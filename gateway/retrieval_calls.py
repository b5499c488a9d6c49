"""Retrieval's calls back into the gateway: embeddings, query rewrites and reranking.

`rag` never imports the gateway; these classes implement its `Embedder`, `Rewriter`
and `Reranker` protocols by routing through the gateway's own router and executor,
so a `gateway` embedder or an LLM reranker gets the same deployment choice, failover
and cost booking as a client's request. With `data_collection: deny` the request's
retrieval calls are routed with the same preference, so they stay on self-hosted
deployments too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway.records import RequestRecord
from providers.errors import ProviderError
from rag.embedders import QueryCache, Vector
from rag.errors import EmbedderFailed
from rag.prompts import parse_order, parse_rewrites, rerank_prompt, rewrite_prompt
from router_policies.attempts import AllAttemptsFailed, AttemptLog
from router_policies.executor import complete, embed

if TYPE_CHECKING:
    from rag.store import Hit  # rag.store loads numpy: not at import time (gateway.retrieval)


def _body(model: str, deny: bool, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, **fields}
    if deny:
        body["provider"] = {"data_collection": "deny"}
    return body


def _book(
    runtime: Any, model: str, kind: str, started: float, log: AttemptLog, result: Any, deployment: Any
) -> None:
    usage = result.usage
    record = RequestRecord(request_id=f"rag-{uuid.uuid4().hex[:20]}", model=model, kind=kind)
    record.deployment, record.provider = deployment.id, deployment.provider
    if usage is not None:
        record.prompt_tokens, record.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        record.cost_usd = deployment.cost_usd(usage.prompt_tokens, usage.completion_tokens)
    record.latency_ms = (time.monotonic() - started) * 1000
    record.attempts = [a.as_dict() for a in log.attempts]
    runtime.finish(record)


class GatewayEmbedder:
    """Embeddings from a model this gateway routes (OpenAI, Together, a vLLM embedding model…)."""

    def __init__(self, runtime: Any, model: str, dim: int, cache: QueryCache, deny: bool = False) -> None:
        self._runtime = runtime
        self._model = model
        self._dim = dim
        self._cache = cache
        self._deny = deny

    @property
    def id(self) -> str:
        return f"gateway:{self._model}"

    @property
    def dim(self) -> int:
        return self._dim

    async def embed_documents(self, texts: Sequence[str]) -> list[Vector]:
        if not texts:
            return []
        runtime = self._runtime
        started, log = time.monotonic(), AttemptLog()
        try:
            plan = runtime.routing.plan(runtime.models, _body(self._model, self._deny), None)
            body = _body(self._model, False, input=list(texts))
            result, deployment = await embed(plan.deployments, body, log, runtime.routing.router, plan.retry)
            data = sorted(result.body.get("data") or [], key=lambda d: d.get("index", 0))
            vectors = [[float(x) for x in d["embedding"]] for d in data]
        except (AllAttemptsFailed, ProviderError, KeyError, TypeError, ValueError) as exc:
            raise EmbedderFailed(self.id, str(exc) or type(exc).__name__) from None
        except Exception as exc:  # a GatewayError from planning: no deployment may serve it
            raise EmbedderFailed(self.id, str(exc) or type(exc).__name__) from None
        if len(vectors) != len(texts) or any(len(v) != self._dim for v in vectors):
            raise EmbedderFailed(self.id, f"expected {len(texts)} vectors of {self._dim} dimensions")
        _book(runtime, self._model, "embeddings", started, log, result, deployment)
        return vectors

    async def embed_query(self, text: str) -> Vector:
        cached = self._cache.get(f"{self._model}\x1f{text}")
        if cached is not None:
            return cached
        vector = (await self.embed_documents([text]))[0]
        self._cache.put(f"{self._model}\x1f{text}", vector)
        return vector


async def _chat(runtime: Any, model: str, deny: bool, prompt: str) -> str:
    started, log = time.monotonic(), AttemptLog()
    plan = runtime.routing.plan(runtime.models, _body(model, deny), None)
    body = _body(model, False, messages=[{"role": "user", "content": prompt}], temperature=0)
    result, deployment = await complete(
        plan.deployments, body, log, runtime.routing.router, plan.hedge, plan.retry
    )
    _book(runtime, model, "chat", started, log, result, deployment)
    choices = result.body.get("choices") or [{}]
    return str(((choices[0] or {}).get("message") or {}).get("content") or "")


class GatewayRewriter:
    """Query expansion: n rewrites of the question by a (cheap) chat model."""

    def __init__(self, runtime: Any, model: str, deny: bool = False) -> None:
        self._runtime, self._model, self._deny = runtime, model, deny

    async def __call__(self, question: str, n: int) -> list[str]:
        text = await _chat(self._runtime, self._model, self._deny, rewrite_prompt(question, n))
        return parse_rewrites(text, n)


class GatewayReranker:
    """An LLM reranker: the model orders the numbered candidates by relevance."""

    def __init__(self, runtime: Any, model: str, deny: bool = False) -> None:
        self._runtime, self._model, self._deny = runtime, model, deny

    async def __call__(self, question: str, hits: list[Hit]) -> list[Hit]:
        prompt = rerank_prompt(question, [h.text for h in hits])
        return parse_order(await _chat(self._runtime, self._model, self._deny, prompt), hits)
