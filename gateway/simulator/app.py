"""`Simulator`: the ASGI app for one simulated OpenAI-compatible provider.

One instance is one upstream (a "groq", a "together", a vLLM twin …). Tests and
benchmarks steer it from Python — `sim.behaviour = Behaviour(...)` for every
request, `sim.script(b1, b2)` for the next ones in order — and read what happened
in `sim.requests` and `sim.streams`. The same controls exist over HTTP under
`/_sim/` (see `control.py`) for a simulator in another process.

Control from another thread is plain attribute swaps, list appends and deque
pops, each atomic under the GIL, so a test thread may steer a server running in
a background thread without locks. Only `release_streams()` must run on the
server's loop (`SimulatorServer` arranges that).

Routes (an optional `/v1` prefix is accepted everywhere): POST chat/completions,
POST responses (the Responses API, `responses.py`), POST embeddings, GET models, GET health, GET metrics (vllm only). GETs are probes
and are not recorded; every POST is, before its behaviour is applied.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

import orjson

from gateway.simulator import control, responses, wire
from gateway.simulator.asgi import (
    ClientGone,
    ClientWatch,
    Receive,
    Scope,
    Send,
    encode_headers,
    read_body,
    send_whole,
    serve_lifespan,
)
from gateway.simulator.behaviour import Behaviour
from gateway.simulator.content import (
    answer_chunks,
    embedding_inputs,
    embedding_vector,
    encode_base64,
    last_user_text,
    prompt_tokens,
    split_chunks,
)
from gateway.simulator.flavours import get_flavour
from gateway.simulator.records import RecordedRequest, StreamRecord
from gateway.simulator.streaming import stream_reply
from gateway.simulator.structured import json_answer, tool_calls
from gateway.simulator.wire import JSON, Reply

RawHeaders = list[tuple[bytes, bytes]]

DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
_HTML = b"text/html; charset=utf-8"
_PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"


class Simulator:
    """One simulated provider; see the module docstring."""

    def __init__(
        self,
        flavour: str = "openai",
        behaviour: Behaviour | None = None,
        name: str | None = None,
        *,
        models: list[str] | None = None,
        keep_records: bool = True,
    ) -> None:
        """`models` are listed by /v1/models and /metrics besides the ones requests name;
        `keep_records=False` stops filling `requests` and `streams` (long benchmarks)."""
        self._flavour = get_flavour(flavour)
        self.flavour = flavour
        self.name = name or flavour
        self.behaviour = behaviour if behaviour is not None else Behaviour()
        self.requests: list[RecordedRequest] = []
        self.streams: list[StreamRecord] = []
        self._script: deque[Behaviour] = deque()
        self._models = list(models or [])
        self._seen: dict[str, None] = {}
        self._running: Counter[str] = Counter()
        self._watches: set[ClientWatch] = set()
        self._served = 0
        self.keep_records = keep_records
        self._created = int(time.time())

    def __repr__(self) -> str:
        return f"Simulator(flavour={self.flavour!r}, name={self.name!r})"

    # -- control ---------------------------------------------------------------------------

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next requests, one each, before falling back to `behaviour`."""
        self._script.extend(behaviours)

    def reset(self, behaviour: Behaviour | None = None) -> None:
        """Forget records, script and seen models; restore the default (or the given) behaviour."""
        self._script.clear()
        self.requests.clear()
        self.streams.clear()
        self._seen.clear()
        self.behaviour = behaviour if behaviour is not None else Behaviour()

    def next_behaviour(self) -> Behaviour:
        try:
            return self._script.popleft()
        except IndexError:
            return self.behaviour

    @property
    def pending_script(self) -> int:
        return len(self._script)

    @property
    def models(self) -> list[str]:
        """Configured models, then models seen in requests; the flavour's default if none."""
        listed = dict.fromkeys([*self._models, *self._seen])
        return list(listed) or [self._flavour.default_model]

    @property
    def in_flight(self) -> int:
        return sum(self._running.values())

    def release_streams(self) -> None:
        """End every open response now (server shutdown). Must run on the server's event loop."""
        for watch in list(self._watches):
            watch.release()

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        path: str = scope["path"].rstrip("/") or "/"
        if path.startswith("/_sim/"):
            await control.handle(self, method, path, receive, send)
            return
        route = path[3:] if path.startswith("/v1/") else path
        if method == "GET":
            await self._probe(route, send)
            return
        try:
            raw = await read_body(receive)
        except ClientGone:
            return
        body = _parse(raw)
        if self.keep_records:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            client = scope.get("client")
            peer = (str(client[0]), int(client[1])) if client else None
            self.requests.append(RecordedRequest(method, path, body, headers, time.monotonic(), peer))
        if method != "POST" or route not in ("/chat/completions", "/responses", "/embeddings"):
            await _error(send, 404, f"Unknown endpoint {method} {path}", "invalid_request_error")
        elif not isinstance(body, dict):
            await _error(send, 400, "The request body is not a JSON object.", "invalid_request_error")
        elif route == "/chat/completions":
            await self._chat(body, receive, send, scope["headers"])
        elif route == "/responses":
            await self._responses(body, receive, send, scope["headers"])
        else:
            await self._embeddings(body, receive, send, scope["headers"])

    async def _probe(self, route: str, send: Send) -> None:
        if route == "/models":
            payload = wire.model_list(self.models, self._flavour.owned_by, self._created)
            await send_whole(send, 200, orjson.dumps(payload))
        elif route == "/health":
            await send_whole(send, 200, b"", b"text/plain")
        elif route == "/metrics" and self._flavour.serves_metrics:
            text = self._flavour.metrics(self.models, self._running, self.behaviour)
            await send_whole(send, 200, text.encode(), _PROMETHEUS)
        else:
            await _error(send, 404, f"Unknown endpoint GET {route}", "invalid_request_error")

    # -- endpoints -------------------------------------------------------------------------

    async def _chat(self, body: JSON, receive: Receive, send: Send, request_headers: RawHeaders) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            await _error(send, 400, "'messages' must be a non-empty list.", "invalid_request_error")
            return
        await self._answer(body, messages, receive, send, request_headers)

    async def _responses(self, body: JSON, receive: Receive, send: Send, request_headers: RawHeaders) -> None:
        """The Responses API: the same reply as a chat completion, in its shape (`responses.py`)."""
        messages = responses.input_messages(body)
        if messages is None:
            message = "'input' must be a string or a non-empty list of items."
            await _error(send, 400, message, "invalid_request_error")
            return
        await self._answer(body, messages, receive, send, request_headers, native=True)

    async def _answer(
        self,
        body: JSON,
        messages: list[Any],
        receive: Receive,
        send: Send,
        request_headers: RawHeaders,
        native: bool = False,
    ) -> None:
        """One answer under the next behaviour: as a chat completion, or (`native`) a Responses one."""
        behaviour = self.next_behaviour()
        model = str(body.get("model") or self._flavour.default_model)
        self._seen.setdefault(model, None)
        headers = self._headers(behaviour)
        self._running[model] += 1
        try:
            if behaviour.status != 200:
                if await self._delay(receive, send, behaviour.first_byte_ms):
                    await _behaviour_error(send, behaviour, headers, request_headers)
                return
            shaping = {"response_format": responses.chat_format(body)} if native else body
            reply = self._reply(shaping, messages, model, behaviour)
            if body.get("stream"):
                await self._stream(reply, behaviour, headers, receive, send, body if native else None)
            elif not await self._delay(receive, send, behaviour.first_byte_ms):
                return
            elif behaviour.garbage:
                await send_whole(send, 200, wire.GARBAGE_BODY, _HTML, headers)
            else:
                answer = responses.response_body(reply, body) if native else self._flavour.completion(reply)
                await send_whole(send, 200, orjson.dumps(answer), headers=headers)
        finally:
            self._running[model] -= 1

    async def _stream(
        self,
        reply: Reply,
        behaviour: Behaviour,
        headers: list[tuple[bytes, bytes]],
        receive: Receive,
        send: Send,
        responses_body: JSON | None = None,
    ) -> None:
        """A chat stream, or with `responses_body` the Responses API's typed events."""
        record = StreamRecord(started_at=time.monotonic(), model=reply.model)
        if self.keep_records:
            self.streams.append(record)

        def on_gone(at: float) -> None:
            if record.finished_at is None and record.closed_by_client_at is None:
                record.closed_by_client_at = at

        watch = ClientWatch(receive, on_gone)
        self._watches.add(watch)
        try:
            if responses_body is None:
                await stream_reply(send, watch, reply, self._flavour, behaviour, headers, record)
            else:
                await responses.stream_response(
                    send, watch, reply, responses_body, self._flavour, behaviour, headers, record
                )
        finally:
            self._watches.discard(watch)

    async def _embeddings(
        self, body: JSON, receive: Receive, send: Send, request_headers: RawHeaders
    ) -> None:
        behaviour = self.next_behaviour()
        model = str(body.get("model") or DEFAULT_EMBEDDING_MODEL)
        self._seen.setdefault(model, None)
        headers = self._headers(behaviour)
        if not await self._delay(receive, send, behaviour.first_byte_ms):
            return
        if behaviour.status != 200:
            await _behaviour_error(send, behaviour, headers, request_headers)
            return
        try:
            texts = embedding_inputs(body.get("input"))
        except ValueError as exc:
            await _error(send, 400, str(exc), "invalid_request_error")
            return
        dimensions = body.get("dimensions")
        size = dimensions if isinstance(dimensions, int) and dimensions > 0 else 16
        vectors: list[Any] = [embedding_vector(text, size) for text in texts]
        if body.get("encoding_format") == "base64":
            vectors = [encode_base64(v) for v in vectors]
        tokens = sum(max(len(text.split()), 1) for text in texts)
        await send_whole(send, 200, orjson.dumps(wire.embeddings(model, vectors, tokens)), headers=headers)

    # -- helpers ---------------------------------------------------------------------------

    def _reply(self, body: JSON, messages: list[Any], model: str, behaviour: Behaviour) -> Reply:
        reply_id, tag = self._flavour.new_ids()
        prompt = last_user_text(messages)
        content = behaviour.content
        if content is None:
            content = json_answer(body.get("response_format"), f"{self.name} on {prompt}".strip())
        chunks = answer_chunks(self.name, messages, content, behaviour.completion_tokens)
        calls = tool_calls(behaviour.tool_calls, reply_id) if behaviour.tool_calls else None
        if calls and behaviour.content is None:
            chunks = []  # an answer that calls tools says nothing else unless told to
        argument_tokens = sum(len(split_chunks(c["function"]["arguments"])) for c in calls or [])
        usage = (
            None
            if behaviour.omit_usage
            else self._flavour.usage(prompt_tokens(messages), len(chunks) + argument_tokens)
        )
        if behaviour.usage is not None and usage is not None:
            usage = {**usage, **behaviour.usage}
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return Reply(reply_id, int(time.time()), model, chunks, usage, include_usage, prompt, tag, calls)

    def _headers(self, behaviour: Behaviour) -> list[tuple[bytes, bytes]]:
        """The flavour's rate-limit headers, overridden by the behaviour's."""
        self._served += 1
        merged = dict(self._flavour.rate_headers(self._served))
        merged.update((k.lower(), v) for k, v in behaviour.ratelimit_headers.items())
        return encode_headers(merged.items())

    async def _delay(self, receive: Receive, send: Send, ms: float) -> bool:
        """Wait `ms` before answering; False if the client left or the server is stopping meanwhile."""
        if ms <= 0:
            return True
        watch = ClientWatch(receive)
        self._watches.add(watch)
        try:
            if await watch.pause(ms / 1000):
                return True
            if watch.released:
                await _error(send, 503, "The simulated upstream is shutting down.", "server_error")
            return False
        finally:
            watch.close()
            self._watches.discard(watch)


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


async def _error(send: Send, status: int, message: str, type_: str, code: str | None = None) -> None:
    await send_whole(send, status, orjson.dumps(wire.error_body(message, type_, code)))


async def _behaviour_error(
    send: Send, behaviour: Behaviour, headers: list[tuple[bytes, bytes]], request_headers: RawHeaders
) -> None:
    err = behaviour.error()
    if behaviour.echo_headers:  # what a misconfigured proxy does: the request's headers, verbatim
        echoed = "; ".join(f"{k.decode('latin-1')}: {v.decode('latin-1')}" for k, v in request_headers)
        err.message = f"{err.message} (request headers: {echoed})"
    extra = list(headers)
    retry_after = behaviour.retry_after_header()
    if retry_after is not None:
        extra.append((b"retry-after", retry_after.encode()))
    body = orjson.dumps(wire.error_body(err.message, err.type, err.code, err.param))
    await send_whole(send, err.status, body, headers=extra)
