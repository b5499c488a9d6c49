"""CPU per request of the gateway's ASGI stack and of chat-body validation, in one process.

`bench.added_latency` measures latency end to end; on a busy machine its p50 scatters
by milliseconds, too much to see a few microseconds. CPU time does not grow while a
process waits for a busy CPU, so this drives the real app (every middleware, the router,
auth, the handler) with `GET /v1/models` in-process, no sockets, and reports the fastest
of `--samples` samples of `--requests` requests, plus the fastest of 9 x 20,000
validations of a chat body. Run it from two checkouts, alternately, to compare code.

    .venv/bin/python -m bench.asgi_overhead [--requests 2000] [--samples 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import timeit
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.config import parse_config
from gateway.request_body import ChatCompletionRequest, validate
from gateway.settings import Settings

CONFIG = """
providers:
  - name: a
    base_url: http://127.0.0.1:9
models:
  - name: m
    deployments:
      - {provider: a, model: x, input_price_per_mtok: 1.0, output_price_per_mtok: 2.0}
"""
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/v1/models",
    "raw_path": b"/v1/models",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"bench")],
    "client": ("127.0.0.1", 1),
    "server": ("127.0.0.1", 8080),
}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16, "stream": False}


async def _stack_us(requests: int, samples: int) -> float:
    home = Path(tempfile.mkdtemp(prefix="asgi-overhead-"))
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{home}/gateway.db", ledger_spool_dir=home / "spool"
    )
    app = create_app(settings, parse_config(CONFIG, "bench.yaml"))
    to_app: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    await to_app.put({"type": "lifespan.startup"})
    lifespan: asyncio.Future[None] = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, to_app.get, from_app.put)
    )
    started = await asyncio.wait_for(from_app.get(), 60)
    assert started["type"] == "lifespan.startup.complete", started
    statuses: set[int] = set()

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    async def run(n: int) -> None:
        for _ in range(n):
            await app(dict(SCOPE, state={}), receive, send)

    await run(requests)  # warm-up
    fastest = float("inf")
    for _ in range(samples):
        begun = time.process_time()
        await run(requests)
        fastest = min(fastest, (time.process_time() - begun) / requests * 1e6)
    assert statuses == {200}, statuses
    await to_app.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(from_app.get(), 60)
    await lifespan
    return fastest


def _validate_us() -> float:
    timer = timeit.Timer(lambda: validate(ChatCompletionRequest, dict(CHAT)), timer=time.process_time)
    return min(timer.repeat(number=20_000, repeat=9)) / 20_000 * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=15)
    args = parser.parse_args()
    stack = asyncio.run(_stack_us(args.requests, args.samples))
    print(
        json.dumps({"asgi_stack_cpu_us": round(stack, 2), "validate_chat_cpu_us": round(_validate_us(), 2)})
    )


if __name__ == "__main__":
    main()
