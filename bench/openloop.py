"""Open-loop load: requests started on a fixed schedule, whatever the answers do.

A closed-loop client (N workers, each waiting for its answer before sending the next)
sends less when the server slows, so the slow moments are sampled less: coordinated
omission. Here request i is due at `start + i / rate` and its latency is counted
from that due time, not from when it actually went out, so a stall — in the server
or in this process — shows up in every request it delayed. Requests in flight are
not bounded; each is bounded by the request timeout, and one that fails is counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import aiohttp

from bench.loadgen import Kind, Target, attempt, call_nonstream, call_stream
from bench.stats import Samples

LEAD_S = 0.05  # the first request is due this long after scheduling starts


async def _due(call: Awaitable[tuple[float, float | None]], lag_s: float) -> tuple[float, float | None]:
    total_ms, ttft_ms = await call
    lag_ms = lag_s * 1000
    return total_ms + lag_ms, (ttft_ms + lag_ms if ttft_ms is not None else None)


async def run_rate(
    session: aiohttp.ClientSession,
    target: Target,
    kind: Kind,
    rate_rps: float,
    duration_s: float,
    request_timeout_s: float,
) -> Samples:
    """`rate_rps * duration_s` requests at a fixed rate; latencies from each one's due time."""
    call = call_stream if kind == "stream" else call_nonstream
    samples = Samples()
    count = max(1, int(rate_rps * duration_s))
    start = time.perf_counter() + LEAD_S
    tasks: list[asyncio.Task[bool]] = []
    for i in range(count):
        due = start + i / rate_rps
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        lag = time.perf_counter() - due  # how late this process sent it: counted, not hidden
        tasks.append(
            asyncio.create_task(attempt(samples, _due(call(session, target), lag), request_timeout_s))
        )
    await asyncio.gather(*tasks)
    return samples
