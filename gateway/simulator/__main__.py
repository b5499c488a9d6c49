"""`python -m gateway.simulator`: run simulated providers as a separate process.

For benchmarks and manual poking with curl; steer them over HTTP with the `/_sim/`
control endpoints. Prints one `name base_url` line per provider, then serves until
SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from gateway.simulator.app import Simulator
from gateway.simulator.flavours import FLAVOURS
from gateway.simulator.server import SimulatorServer


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gateway.simulator", description=__doc__)
    parser.add_argument(
        "flavours", nargs="*", default=["openai"], help=f"one server per flavour: {', '.join(FLAVOURS)}"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="first port; 0 lets the OS pick each one")
    return parser.parse_args()


async def _main(args: argparse.Namespace) -> None:
    servers = [
        SimulatorServer(Simulator(flavour), args.host, args.port + i if args.port else 0)
        for i, flavour in enumerate(args.flavours)
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for server in servers:
            print(server.sim.name, await server.serve_in_loop(), flush=True)
        await stop.wait()
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                await server.shutdown()


if __name__ == "__main__":
    asyncio.run(_main(_parse_args()))
