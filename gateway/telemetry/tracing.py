"""Traces: the provider set up at start-up, the server span per request, the gateway's own spans.

Tracing is on when an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; every standard `OTEL_*` variable is read by the
SDK and the exporter), or when `GATEWAY_TRACING=on`; `GATEWAY_TRACING=off` or
`OTEL_SDK_DISABLED=true` turn it off. When it is off no tracer provider is installed
and the middleware passes requests straight through; every other span here is started
only under a recording parent, so an untraced request costs a few context lookups.
`GATEWAY_TRACING=on` with no endpoint installs a provider with no span processor: spans
would be built and dropped unseen (0.3-0.6 ms of CPU per request), so until a processor
is added the gateway serves as with tracing off.

The tree of one request: the SERVER span (continuing an incoming `traceparent`) with
children for authentication (`gateway.auth`, when a virtual key is presented),
admission (`gateway.admit`: key limits and budget), retrieval (`gateway.rag`, with
rag's own `rag.embed` and `rag.search`), the routing decision (`gateway.route`), each
upstream attempt (router_policies.tracing, which also puts a
`traceparent` on the upstream request) and, for streams, the relay (`gateway.stream`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import ProxyTracerProvider, Span, SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.streaming import StreamContext
    from router_policies.router import Plan

tracer = trace.get_tracer("gateway")
SERVICE_NAME = "llm-gateway"


def _otlp_endpoint() -> str | None:
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )


def configure_tracing(settings: Settings) -> Any:
    """Install the SDK's tracer provider (and the OTLP/HTTP exporter) if tracing is on; the provider or None."""
    endpoint = _otlp_endpoint()
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    if disabled or settings.tracing == "off" or (settings.tracing == "auto" and not endpoint):
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME as SERVICE_NAME_KEY
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    service = os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME_KEY: service}))
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def tracing_active() -> bool:
    """True when a provider records spans and something receives them (a span processor)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, ProxyTracerProvider | trace.NoOpTracerProvider):
        return False
    # The SDK's provider keeps its processors here; another provider is taken as recording.
    processors = getattr(getattr(provider, "_active_span_processor", None), "_span_processors", None)
    return processors is None or bool(processors)


class _AsgiHeaders(Getter[list[tuple[bytes, bytes]]]):
    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        name = key.lower().encode("latin-1")
        values = [v.decode("latin-1") for k, v in carrier if k.lower() == name]
        return values or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_GETTER = _AsgiHeaders()


class TracingMiddleware:
    """One SERVER span per HTTP request, ended after the last byte of the body (streams too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing_active():
            await self.app(scope, receive, send)
            return
        parent = propagate.extract(scope.get("headers") or [], getter=_GETTER)
        method, path = scope["method"], scope["path"]
        attributes = {"http.request.method": method, "url.path": path}
        request_id = (scope.get("state") or {}).get("request_id")
        if request_id:
            attributes["gateway.request_id"] = request_id
        with tracer.start_as_current_span(
            f"{method} {path}", context=parent, kind=SpanKind.SERVER, attributes=attributes
        ) as span:

            async def traced_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(StatusCode.ERROR)
                await send(message)

            await self.app(scope, receive, traced_send)


@contextmanager
def child_span(name: str, **attributes: Any) -> Iterator[Span | None]:
    """A span under the current one, or nothing (None) when the request is not traced."""
    if not trace.get_current_span().is_recording():
        yield None
        return
    with tracer.start_as_current_span(name, attributes=attributes) as span:
        yield span


def annotate_plan(span: Span | None, plan: Plan) -> None:
    """The routing decision: policy and order as attributes, each candidate and exclusion as an event."""
    if span is None:
        return
    span.set_attribute("gateway.routing.policy", plan.policy)
    span.set_attribute("gateway.routing.plan", [d.id for d in plan.deployments])
    span.set_attribute("gateway.routing.hedge", plan.hedge.enabled)
    for candidate in plan.candidates:
        d = candidate.deployment
        span.add_event(
            "candidate", {"deployment": d.id, "score": candidate.score, "samples": candidate.stats.count}
        )
    for deployment, reason in plan.excluded:
        span.add_event("excluded", {"deployment": deployment, "reason": reason})


def start_stream_span() -> Span | None:
    """The relay's span; started without becoming current (the relay is a generator)."""
    if not trace.get_current_span().is_recording():
        return None
    return tracer.start_span("gateway.stream")


def end_stream_span(span: Span | None, ctx: StreamContext, cancelled: bool, error: str | None) -> None:
    """How the stream ended: `stop` (or the finish reason), `error_chunk`, or `client_gone`."""
    if span is None:
        return
    ended = "error_chunk" if error else ("client_gone" if cancelled else (ctx.finish_reason or "stop"))
    span.set_attribute("gateway.stream.end", ended)
    span.set_attribute("gateway.stream.chunks", ctx.chunks)
    span.set_attribute("gateway.stream.segments", len(ctx.segments))
    if ctx.segments:
        first = ctx.segments[0].started
        span.set_attribute(
            "gateway.stream.time_to_first_token_ms", (first.first_token_at - ctx.started_at) * 1000
        )
        span.set_attribute("gateway.deployment", ctx.segments[-1].started.deployment.id)
    if error:
        span.set_attribute("error.type", error)
        span.set_status(StatusCode.ERROR, error)
    span.end()
