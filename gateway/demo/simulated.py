"""Start the simulated upstreams that providers marked `simulate:` point at.

Each runs as a real HTTP server on a free loopback port inside the gateway's own
event loop, so the gateway reaches it exactly as it would reach Groq or a vLLM box.
The flavours differ the way the real providers do (speed, citations, metrics).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from gateway.config import ProviderConfig
from gateway.simulator import Behaviour, Simulator, SimulatorServer

log = logging.getLogger("gateway.demo")

# Rough character of each simulated provider: fast, cheap-but-slower, search, self-hosted.
_CHARACTER = {
    "groq": Behaviour(first_byte_ms=80, chunk_gap_ms=8, completion_tokens=24),
    "together": Behaviour(first_byte_ms=250, chunk_gap_ms=25, completion_tokens=24),
    "perplexity": Behaviour(first_byte_ms=400, chunk_gap_ms=20, completion_tokens=24),
    "vllm": Behaviour(first_byte_ms=150, chunk_gap_ms=15, completion_tokens=24),
    "openai": Behaviour(first_byte_ms=200, chunk_gap_ms=15, completion_tokens=24),
}


async def start_simulated_upstreams(
    providers: Sequence[ProviderConfig],
) -> tuple[dict[str, str], Callable[[], Awaitable[None]]]:
    """Returns each provider's base URL and a function that stops them all."""
    servers: list[SimulatorServer] = []
    urls: dict[str, str] = {}
    for provider in providers:
        flavour = provider.simulate or "openai"
        server = SimulatorServer(
            Simulator(flavour, _CHARACTER.get(flavour), name=provider.name, keep_records=False)
        )
        urls[provider.name] = await server.serve_in_loop()
        servers.append(server)
        log.warning(
            "provider %s is SIMULATED (%s flavour) at %s", provider.name, flavour, urls[provider.name]
        )

    async def stop() -> None:
        for server in servers:
            await server.shutdown()

    return urls, stop
