"""The adapter for every OpenAI-compatible upstream (Groq, Together, Perplexity, vLLM, …).

It serialises the neutral call, sends it through the provider's pooled transport,
classifies HTTP errors, checks that what came back is really the API's shape, and
applies the provider's quirks. Streams are decoded incrementally and the upstream
response is always closed, whatever happens to the consumer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from providers.classify import classify_status
from providers.errors import UpstreamProtocolError, UpstreamStreamError
from providers.quirks import Quirks, StreamNormaliser
from providers.ratelimit_headers import parse_rate_limit_headers
from providers.redact import Redactor
from providers.responses_wire import RESPONSES_FIELD, EventsToChunks, completion
from providers.responses_wire import request as responses_request
from providers.sse import SSEDecoder
from providers.transport import RawStream, Transport
from providers.types import JSON, ChatResult, EmbeddingsResult, RateLimitInfo, UpstreamCall, Usage

_DONE = "[DONE]"


def _parse_json_object(data: bytes | str, provider: str, what: str) -> JSON:
    try:
        parsed: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError(
            f"the upstream sent a {what} that is not JSON", provider=provider
        ) from None
    if not isinstance(parsed, dict):
        raise UpstreamProtocolError(
            f"the upstream sent a {what} that is not a JSON object", provider=provider
        )
    return parsed


def _stream_error_message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "error event in stream")
    return str(error)


class OpenAIChunkStream:
    """Parsed chunks from one upstream SSE response.

    Ends cleanly on `data: [DONE]` (or a clean end after a finish_reason); raises
    `UpstreamProtocolError` for a malformed chunk or a stream cut short, and
    `UpstreamStreamError` for an error event inside the stream.
    """

    __slots__ = ("_normaliser", "_provider", "_raw", "_redact", "rate_limit")

    def __init__(self, raw: RawStream, normaliser: StreamNormaliser, provider: str, redact: Redactor) -> None:
        self._raw = raw
        self._normaliser = normaliser
        self._provider = provider
        self._redact = redact
        self.rate_limit: RateLimitInfo = parse_rate_limit_headers(raw.headers)

    async def __aiter__(self) -> AsyncIterator[JSON]:
        decoder = SSEDecoder()
        saw_finish = False
        try:
            async for data in self._raw.chunks():
                for event in decoder.feed(data):
                    if event.data == _DONE:
                        await self._raw.finish()
                        return
                    if not event.data:
                        continue
                    chunk = _parse_json_object(event.data, self._provider, "stream chunk")
                    if "error" in chunk and not chunk.get("choices"):
                        raise UpstreamStreamError(
                            self._redact(_stream_error_message(chunk["error"])), provider=self._provider
                        )
                    self._normaliser.chunk(chunk)
                    choices = chunk.get("choices")
                    if choices and isinstance(choices, list) and isinstance(choices[0], dict):
                        saw_finish = saw_finish or choices[0].get("finish_reason") is not None
                    yield chunk
        finally:
            await self._raw.aclose()
        if not saw_finish:
            raise UpstreamProtocolError(
                "the upstream stream ended before it finished", provider=self._provider
            )

    async def aclose(self) -> None:
        await self._raw.aclose()


class ResponsesChunkStream:
    """Chat chunks from one upstream Responses API stream (`responses_wire.EventsToChunks`).

    Ends cleanly on `response.completed` (or `response.incomplete`); raises
    `UpstreamStreamError` for `response.failed` or an `error` event, and
    `UpstreamProtocolError` for a malformed event or a stream cut short.
    """

    __slots__ = ("_provider", "_raw", "_redact", "rate_limit")

    def __init__(self, raw: RawStream, provider: str, redact: Redactor) -> None:
        self._raw = raw
        self._provider = provider
        self._redact = redact
        self.rate_limit: RateLimitInfo = parse_rate_limit_headers(raw.headers)

    async def __aiter__(self) -> AsyncIterator[JSON]:
        decoder = SSEDecoder()
        events = EventsToChunks(self._provider, self._redact)
        try:
            async for data in self._raw.chunks():
                for event in decoder.feed(data):
                    if not event.data or event.data == _DONE:
                        continue
                    chunk = events.feed(_parse_json_object(event.data, self._provider, "stream event"))
                    if chunk is not None:
                        yield chunk
                    if events.finished:
                        await self._raw.finish()
                        return
        finally:
            await self._raw.aclose()
        raise UpstreamProtocolError("the upstream stream ended before it finished", provider=self._provider)

    async def aclose(self) -> None:
        await self._raw.aclose()


class OpenAICompatAdapter:
    """One provider reachable over OpenAI's HTTP API."""

    def __init__(
        self,
        name: str,
        base_url: str,
        transport: Transport,
        *,
        api_key: str | None = None,
        quirks: Quirks | None = None,
        extra_headers: dict[str, str] | None = None,
        redact: Redactor | None = None,
    ) -> None:
        self.name = name
        # The runtime passes one Redactor knowing every configured secret; alone, this key.
        self._redact = redact or Redactor([api_key])
        base = base_url.rstrip("/")
        self._chat_url = f"{base}/chat/completions"
        self._embeddings_url = f"{base}/embeddings"
        self._responses_url = f"{base}/responses"
        self._transport = transport
        self._quirks = quirks or Quirks()
        headers = {"content-type": "application/json", "accept": "application/json"}
        headers.update(extra_headers or {})
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._headers = headers
        self._stream_headers = {**headers, "accept": "text/event-stream"}

    def __repr__(self) -> str:  # never show the headers: they hold the key
        return f"OpenAICompatAdapter(name={self.name!r}, url={self._chat_url!r})"

    def _headers_for(self, base: dict[str, str], call: UpstreamCall) -> dict[str, str]:
        return {**base, **call.headers} if call.headers else base

    async def chat(self, call: UpstreamCall) -> ChatResult:
        """A chat completion; through the upstream's Responses API when the body asks for it natively."""
        native = RESPONSES_FIELD in call.body
        body = orjson.dumps(responses_request(call.body) if native else call.body)
        raw = await self._transport.post(
            self._responses_url if native else self._chat_url,
            body,
            self._headers_for(self._headers, call),
            call.timeouts,
            self.name,
        )
        if raw.status >= 400:
            raise classify_status(raw.status, raw.headers, raw.body, self.name, self._redact)
        parsed = _parse_json_object(raw.body, self.name, "response")
        if native:
            parsed = completion(parsed, self.name)
        if not isinstance(parsed.get("choices"), list):
            raise UpstreamProtocolError("the upstream response has no choices", provider=self.name)
        self._quirks.response(parsed)
        return ChatResult(
            parsed, Usage.from_openai(parsed.get("usage")), parse_rate_limit_headers(raw.headers)
        )

    async def chat_stream(self, call: UpstreamCall) -> OpenAIChunkStream | ResponsesChunkStream:
        native = RESPONSES_FIELD in call.body
        body = orjson.dumps(responses_request(call.body) if native else call.body)
        raw = await self._transport.open_stream(
            self._responses_url if native else self._chat_url,
            body,
            self._headers_for(self._stream_headers, call),
            call.timeouts,
            self.name,
        )
        if raw.status >= 400:
            try:
                error_body = await raw.read_all()
            finally:
                await raw.aclose()
            raise classify_status(raw.status, raw.headers, error_body, self.name, self._redact)
        if native:
            return ResponsesChunkStream(raw, self.name, self._redact)
        return OpenAIChunkStream(raw, self._quirks.stream(), self.name, self._redact)

    async def embeddings(self, call: UpstreamCall) -> EmbeddingsResult:
        body = orjson.dumps(call.body)
        raw = await self._transport.post(
            self._embeddings_url, body, self._headers_for(self._headers, call), call.timeouts, self.name
        )
        if raw.status >= 400:
            raise classify_status(raw.status, raw.headers, raw.body, self.name, self._redact)
        parsed = _parse_json_object(raw.body, self.name, "response")
        if not isinstance(parsed.get("data"), list):
            raise UpstreamProtocolError("the upstream embeddings response has no data", provider=self.name)
        return EmbeddingsResult(
            parsed, Usage.from_openai(parsed.get("usage")), parse_rate_limit_headers(raw.headers)
        )

    async def aclose(self) -> None:
        """The transport is shared per origin and closed by its pool."""
