"""`python -m bench.upstream`: the fake upstream of a benchmark, in its own process.

A `gateway.simulator` OpenAI-flavoured `Simulator` answering instantly (no
first-byte delay and, unless `--chunk-gap-ms` asks for one, no gap between chunks)
so that what a benchmark measures is the gateway's overhead, not the upstream's. Runs on uvloop with uvicorn's httptools
protocol, keeps no per-request records, and prints its base URL on one line once it
accepts connections; serves until SIGINT/SIGTERM.

It wraps the simulator in a tiny ASGI counter so the benchmark can check, per
phase, how many requests and distinct TCP connections reached it, split by caller:
requests whose User-Agent is `LOADGEN_USER_AGENT` came straight from the load
generator, `PASSTHROUGH_USER_AGENT` through `bench.passthrough`, every other one
through the gateway. `GET /_bench/stats` returns
the counts (and the gateway's User-Agent, which shows which HTTP client library it
used); `POST /_bench/reset` zeroes them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvloop

from gateway.simulator import Behaviour, Simulator, SimulatorServer
from gateway.simulator.asgi import Receive, Scope, Send, read_body, send_whole

LOADGEN_USER_AGENT = "bench-loadgen"
PASSTHROUGH_USER_AGENT = "bench-passthrough"
_CALLERS = {LOADGEN_USER_AGENT: "direct", PASSTHROUGH_USER_AGENT: "passthrough"}
STATS_PATH = "/_bench/stats"
RESET_PATH = "/_bench/reset"


@dataclass(slots=True)
class _Counts:
    requests: int = 0
    peers: set[tuple[str, int]] = field(default_factory=set)
    user_agents: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "connections": len(self.peers),
            "user_agents": sorted(self.user_agents),
        }


def _new_counts() -> dict[str, _Counts]:
    return {"direct": _Counts(), "passthrough": _Counts(), "gateway": _Counts()}


class CountingSimulator(Simulator):
    """A `Simulator` that first counts chat requests and distinct client (host, port) pairs."""

    def __init__(self, completion_tokens: int, chunk_gap_ms: float = 0) -> None:
        behaviour = fast_behaviour(completion_tokens, chunk_gap_ms)
        super().__init__("openai", behaviour, name="bench", keep_records=False)
        self.counts = _new_counts()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path in (STATS_PATH, RESET_PATH):
                await read_body(receive)
                if path == RESET_PATH:
                    self.counts = _new_counts()
                payload = {name: counts.as_dict() for name, counts in self.counts.items()}
                await send_whole(send, 200, orjson.dumps(payload))
                return
            if path.endswith("/chat/completions"):
                self._count(scope)
        await super().__call__(scope, receive, send)

    def _count(self, scope: Scope) -> None:
        agent = ""
        for name, value in scope["headers"]:
            if name == b"user-agent":
                agent = value.decode("latin-1")
                break
        counts = self.counts[_CALLERS.get(agent, "gateway")]
        counts.requests += 1
        client = scope.get("client")
        if client:
            counts.peers.add((str(client[0]), int(client[1])))
        if len(counts.user_agents) < 4:
            counts.user_agents.add(agent)


def fast_behaviour(completion_tokens: int, chunk_gap_ms: float = 0) -> Behaviour:
    return Behaviour(first_byte_ms=0, chunk_gap_ms=chunk_gap_ms, completion_tokens=completion_tokens)


async def _serve(args: argparse.Namespace) -> None:
    simulator = CountingSimulator(args.completion_tokens, args.chunk_gap_ms)
    server = SimulatorServer(simulator, args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        print(await server.serve_in_loop(), flush=True)
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 lets the OS pick")
    parser.add_argument("--completion-tokens", type=int, default=16)
    parser.add_argument(
        "--chunk-gap-ms", type=float, default=0.0, help="pause between content chunks of a stream"
    )
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(args))


if __name__ == "__main__":
    main()
