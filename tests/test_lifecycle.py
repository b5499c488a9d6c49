"""Readiness (`/ready`) against real dependencies coming and going, and graceful shutdown of a real process.

`/health` is liveness; `/ready` waits for the database, Redis and Qdrant (when
configured) to answer, and turns 503 the moment SIGTERM arrives. On SIGTERM streams in
flight finish up to the shutdown deadline, the rest end with the error chunk, the
ledger is flushed and the process exits 0.
"""

from __future__ import annotations

import http.server
import json
import signal
import socket
import sqlite3
import threading
from typing import Any

import httpx
import pytest

from gateway.simulator import Behaviour
from tests.harness import GatewayProcess, config_for, wait_for
from tests.test_routing_redis import OwnRedis


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(url: str) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{url}/ready", timeout=5)
    return response.status_code, response.json()


class FakeQdrant:
    """Stands in for a Qdrant server's `/readyz` on a fixed port, started and stopped at will."""

    def __init__(self, port: int) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200 if self.path == "/readyz" else 404)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_ready_waits_for_redis_and_qdrant_then_stays_ready_when_they_go(fake, gateway, tmp_path):
    redis, qdrant_port = OwnRedis(), _free_port()
    gw = gateway(
        config_for({"a": fake().url}),
        database_url=f"sqlite+aiosqlite:///{tmp_path}/g.db",
        ledger_spool_dir=tmp_path / "spool",
        redis_url=redis.url,
        qdrant_url=f"http://127.0.0.1:{qdrant_port}",
    )
    assert httpx.get(f"{gw.url}/health", timeout=5).status_code == 200  # alive all along
    status, body = _ready(gw.url)
    assert status == 503 and body["status"] == "starting"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("unavailable") and body["checks"]["qdrant"].startswith(
        "unavailable"
    )

    redis.start()
    try:
        status, body = _ready(gw.url)
        assert status == 503 and body["checks"]["redis"] == "ok"  # Qdrant has not answered yet
        qdrant = FakeQdrant(qdrant_port)
        status, body = _ready(gw.url)
        assert status == 200 and body == {
            "status": "ready",
            "checks": {"database": "ok", "redis": "ok", "qdrant": "ok"},
        }
        qdrant.stop()
    finally:
        redis.stop()
    # Started once, a replica stays in the load balancer through an outage it can serve through.
    status, body = _ready(gw.url)
    assert status == 200 and body["status"] == "ready"
    assert body["checks"]["redis"].startswith("unavailable") and body["checks"]["qdrant"].startswith(
        "unavailable"
    )


def test_ready_waits_for_the_database(fake, gateway, tmp_path):
    from gateway.db.engine import upgrade
    from tests.pg_throwaway import ThrowawayPostgres

    pg = ThrowawayPostgres()
    try:
        pg.start()
        upgrade(pg.url)
        pg.stop()
        gw = gateway(
            config_for({"a": fake().url}),
            database_url=pg.url,
            ledger_spool_dir=tmp_path / "spool",
            migrate_on_start=False,
        )
        status, body = _ready(gw.url)
        assert status == 503 and body["status"] == "starting"
        assert body["checks"]["database"].startswith("unavailable")
        pg.start()
        _, body = wait_for(lambda: (r := _ready(gw.url))[0] == 200 and r, timeout_s=10)
        assert body == {"status": "ready", "checks": {"database": "ok"}}
    finally:
        pg.destroy()


def _stream(url: str, model: str, events: list[dict[str, Any]], first: threading.Event) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append({"done": True} if line == "data: [DONE]" else json.loads(line[6:]))
                first.set()


def test_sigterm_stops_accepting_lets_streams_finish_cuts_the_late_one_and_exits_0(fake, tmp_path):
    """Drain 2 s, deadline 4 s: a 3 s stream finishes, a 20 s one gets the error chunk at the deadline."""
    short = fake(behaviour=Behaviour(chunk_gap_ms=100, completion_tokens=30), name="short")
    long = fake(behaviour=Behaviour(chunk_gap_ms=100, completion_tokens=200), name="long")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        config_for({"short": short.url, "long": long.url}, {"s": [("short", "s")], "l": [("long", "l")]})
    )
    db = tmp_path / "g.db"
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "GATEWAY_LEDGER_FLUSH_S": "3600",  # only the shutdown flush writes the rows
        "GATEWAY_LEDGER_SPOOL_DIR": str(tmp_path / "spool"),
        "GATEWAY_SHUTDOWN_DRAIN_S": "2",
        "GATEWAY_SHUTDOWN_TIMEOUT_S": "4",
    }
    server = GatewayProcess(config, env, tmp_path / "serve.log").wait_ready(timeout_s=60)
    assert _ready(server.url)[0] == 200
    streams: dict[str, list[dict[str, Any]]] = {"s": [], "l": []}
    started = {m: threading.Event() for m in streams}
    threads = [
        threading.Thread(target=_stream, args=(server.url, m, streams[m], started[m]), daemon=True)
        for m in streams
    ]
    for t in threads:
        t.start()
    for m in streams:
        assert started[m].wait(10), m
    server.process.send_signal(signal.SIGTERM)

    # Not ready at once, while still accepting (the drain); then no new connections at all.
    def not_ready() -> dict[str, Any] | None:
        try:
            status, body = _ready(server.url)
        except httpx.HTTPError:
            return None  # a connection caught by the switch; ask again
        return body if status == 503 else None

    assert wait_for(not_ready, timeout_s=2)["status"] == "shutting_down"

    def refused() -> bool:
        try:
            httpx.get(f"{server.url}/health", timeout=1)
        except httpx.ConnectError:
            return True
        except httpx.HTTPError:
            return False
        return False

    wait_for(refused, timeout_s=5)
    for t in threads:
        t.join(timeout=20)
    assert server.process.wait(timeout=20) == 0, server.log_path.read_text()

    finished, cut = streams["s"], streams["l"]
    assert finished[-1] == {"done": True} and finished[-2]["choices"][0]["finish_reason"] == "stop"
    assert all("error" not in chunk for chunk in finished)
    assert cut[-1] == {"done": True} and cut[-2]["choices"][0]["finish_reason"] == "error"
    assert cut[-2]["error"]["code"] == 503 and cut[-2]["error"]["metadata"]["error_type"] == "shutting_down"
    assert 10 < len(cut) < 200  # ended early, not run to its 200 tokens
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT model, coalesce(error, finish_reason) FROM ledger").fetchall())
    assert rows == {"s": "stop", "l": "shutting_down"}  # both booked, by the flush at shutdown
    assert "Application shutdown complete" in server.log_path.read_text()


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_with_nothing_in_flight_exits_0(workers, fake, tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(config_for({"a": fake().url}))
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/g.db", "GATEWAY_LEDGER_SPOOL_DIR": str(tmp_path)}
    if workers > 1:
        from tests.harness import redis_url

        env["REDIS_URL"] = redis_url()
    server = GatewayProcess(config, env, tmp_path / "serve.log", ("--workers", str(workers))).wait_ready(
        timeout_s=60
    )
    assert server.stop() == 0, server.log_path.read_text()
