"""HTTP limits, over raw sockets: header size (431), head and body deadlines (408),
open connections (503) — each a complete response with OpenAI's envelope, then a close.
The in-thread gateway and `gateway serve` share one server configuration."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx

from tests.harness import GatewayProcess, config_for, wait_for

REQUEST = b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _read_until_closed(sock: socket.socket, limit_s: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (bounded)."""
    sock.settimeout(limit_s)
    data = b""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            part = sock.recv(65536)
        except ConnectionResetError:
            break
        if not part:
            break
        data += part
    return data


def _status_and_error(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"connection: close" in head.lower()
    return status, json.loads(body)["error"]


def test_oversized_header_block_is_431_and_closed(fake, gateway):
    gw = gateway(config_for({"a": fake().url}), max_header_bytes=16 * 1024)
    with _connect(gw.url) as sock:
        sock.sendall(REQUEST + b"x-filler: " + b"a" * 64 * 1024 + b"\r\n")
        try:  # keep sending an endless header block: the server must cut it off, not buffer it
            for _ in range(256):
                sock.sendall(b"x-more: " + b"b" * 8192 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, error = _status_and_error(_read_until_closed(sock))
    assert status == 431 and error["code"] == "headers_too_large" and "16384" in error["message"]
    # Headers under the limit are fine, and so is a body far over it arriving with the head.
    ok = httpx.get(f"{gw.url}/health", headers={"x-filler": "a" * 8 * 1024})
    assert ok.status_code == 200
    big = {"model": "m", "messages": [{"role": "user", "content": "word " * 20_000}]}
    with _connect(gw.url) as sock:
        payload = json.dumps(big).encode()
        sock.sendall(REQUEST + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(payload) + payload)
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 200")


def test_stalled_head_and_silent_connection_are_cut_off_with_408(fake, gateway):
    gw = gateway(config_for({"a": fake().url}), header_timeout_s=0.5)
    with _connect(gw.url) as slow, _connect(gw.url) as silent:
        slow.sendall(REQUEST[:30])  # a head that never completes (slow loris)
        status, error = _status_and_error(_read_until_closed(slow))
        assert status == 408 and error["code"] == "request_timeout" and "headers" in error["message"]
        status, _ = _status_and_error(_read_until_closed(silent))  # never sent a byte
        assert status == 408


def test_stalled_body_is_cut_off_with_408(fake, gateway):
    up = fake()
    gw = gateway(config_for({"a": up.url}), body_timeout_s=0.5)
    with _connect(gw.url) as sock:
        sock.sendall(REQUEST + b"content-length: 100\r\n\r\n" + b'{"model": "m", ')
        status, error = _status_and_error(_read_until_closed(sock))
    assert status == 408 and "body" in error["message"]
    assert up.sim.requests == []


def test_connections_over_the_cap_get_503(fake, gateway):
    gw = gateway(config_for({"a": fake().url}), max_connections=3)
    held = [_connect(gw.url) for _ in range(3)]
    try:
        for sock in held:  # each one fully open and served
            sock.sendall(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        with _connect(gw.url) as extra:
            status, error = _status_and_error(_read_until_closed(extra))
        assert status == 503 and error["code"] == "too_many_connections"
    finally:
        for sock in held:
            sock.close()

    def served() -> bool:
        try:
            return httpx.get(f"{gw.url}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(served, timeout_s=10)  # closing them frees their places


def test_gateway_serve_applies_the_same_limits(fake, tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(config_for({"a": fake().url}))
    env = {
        "GATEWAY_MAX_HEADER_BYTES": "4096",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/g.db",
        "GATEWAY_LEDGER_SPOOL_DIR": str(tmp_path / "spool"),
    }
    process = GatewayProcess(config, env, tmp_path / "gateway.log").wait_ready()
    try:
        with _connect(process.url) as sock:
            sock.sendall(REQUEST + b"x-filler: " + b"a" * 8192 + b"\r\n\r\n")
            status, _ = _status_and_error(_read_until_closed(sock))
        assert status == 431
    finally:
        process.stop()
