"""How soon after a client hangs up does the gateway hang up on the upstream?

`python -m bench.disconnect_close [--streams 50] [--client aiohttp|httpx]`

The test suite checks that the gateway closes the upstream when a streaming client
disconnects (and closes it itself, not through the garbage collector); this measures how
quickly. A fake upstream (`gateway.simulator`, in this process, streaming 2000 chunks
20 ms apart) records the moment its client connection closes; the gateway runs as
`gateway serve` in its own process. For each stream the client reads five content
chunks, closes its connection, and the delay until the upstream saw its connection close
is recorded. Reported: p50, p90, p99 and max in ms; JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx

from bench.procs import gateway_config, start_gateway
from bench.report import write_json
from bench.stats import percentile
from gateway.simulator import Behaviour, Simulator, SimulatorServer

BODY = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "go"}]}


def _one(url: str, sim: Simulator) -> float:
    before = len(sim.streams)
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=BODY, timeout=30) as response:
        lines, seen = response.iter_lines(), 0
        while seen < 5:
            seen += next(lines).startswith("data: ")
        closed_at = time.monotonic()
    record = sim.streams[before]
    deadline = time.monotonic() + 10
    while record.closed_by_client_at is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the upstream was not closed within 10 s")
        time.sleep(0.001)
    return (record.closed_by_client_at - closed_at) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--client", choices=["aiohttp", "httpx"], default="aiohttp")
    args = parser.parse_args()
    sim = Simulator(behaviour=Behaviour(completion_tokens=2000, chunk_gap_ms=20))
    upstream = SimulatorServer(sim)
    base = upstream.start_in_thread()
    with tempfile.TemporaryDirectory(prefix="bench-disconnect-") as workdir:
        gateway, url = start_gateway(Path(workdir), gateway_config(base, "m", "bench"), args.client)
        try:
            delays = sorted(_one(url, sim) for _ in range(args.streams))
        finally:
            gateway.stop()
            upstream.stop()
    result = {
        "client": args.client,
        "streams": args.streams,
        **{f"p{q}_ms": round(percentile(delays, q) or 0.0, 2) for q in (50, 90, 99)},
        "max_ms": round(delays[-1], 2),
    }
    print(" ".join(f"{k}={v}" for k, v in result.items()))
    write_json(result, Path("bench/results/disconnect_close.json"))


if __name__ == "__main__":
    main()
