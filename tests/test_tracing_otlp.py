"""`gateway serve` exports its spans over real OTLP/HTTP to a receiver that decodes the protobuf."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.harness import config_for, serve_process, wait_for


class Receiver:
    """An OTLP/HTTP trace receiver on a loopback port: every span it got, with its attributes."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.paths.append(self.path)
                for resource_spans in request.resource_spans:
                    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            receiver.spans.append(
                                {
                                    "name": span.name,
                                    "trace_id": span.trace_id.hex(),
                                    "parent_span_id": span.parent_span_id.hex(),
                                    "attributes": {a.key: a.value for a in span.attributes},
                                    "service": resource.get("service.name"),
                                }
                            )
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_spans_are_exported_over_otlp_http(fake, tmp_path):
    upstream = fake()
    receiver = Receiver()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "gateway-under-test",
    }
    gateway = serve_process(tmp_path, config_for({"up": upstream.url}), env)
    trace_id = os.urandom(16).hex()
    try:
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20},
            headers={"traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01"},
            timeout=30,
        )
        assert response.status_code == 200

        def exported() -> dict[str, dict[str, Any]] | None:
            mine = {s["name"]: s for s in receiver.spans if s["trace_id"] == trace_id}
            return mine if {"POST /v1/chat/completions", "chat up-model"} <= set(mine) else None

        spans = wait_for(exported, timeout_s=20)
    finally:
        gateway.stop()
        receiver.stop()
    assert receiver.paths and all(path == "/v1/traces" for path in receiver.paths)
    server, attempt = spans["POST /v1/chat/completions"], spans["chat up-model"]
    assert server["service"] == "gateway-under-test"
    assert attempt["attributes"]["gen_ai.request.model"].string_value == "up-model"
    assert attempt["attributes"]["gen_ai.request.max_tokens"].int_value == 20
    assert attempt["attributes"]["gen_ai.usage.output_tokens"].int_value > 0
    assert upstream.sim.requests[-1].headers["traceparent"].split("-")[1] == trace_id


def test_tracing_on_with_nowhere_to_send_spans_serves_as_untraced(fake, tmp_path):
    """`GATEWAY_TRACING=on` without an endpoint has no span processor: no span is built, so none
    is propagated to the upstream (with one, as above, the attempt's `traceparent` goes out)."""
    upstream = fake()
    gateway = serve_process(tmp_path, config_for({"up": upstream.url}), {"GATEWAY_TRACING": "on"})
    try:
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            headers={"traceparent": f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"},
            timeout=30,
        )
    finally:
        gateway.stop()
    assert response.status_code == 200
    assert upstream.sim.requests and "traceparent" not in upstream.sim.requests[-1].headers
