"""Simulated OpenAI-compatible upstream providers, served over real HTTP on loopback.

Two users: the gateway's demo mode (simulated "groq", "together", "perplexity"
and vLLM upstreams, so it runs without API keys) and the test suite and
benchmarks (upstreams that are slow, fail, rate-limit or die mid-stream on
command). Standalone on purpose — stdlib, uvicorn and orjson only, nothing else
of ours — so it can never mask a gateway bug by sharing the gateway's code.

    sim = Simulator("groq")
    with SimulatorServer(sim) as base_url:          # http://127.0.0.1:PORT/v1
        sim.script(Behaviour(status=429, retry_after_s=1), Behaviour(die_after_chunks=3))
        ...
        assert sim.streams[-1].outcome == "died"
"""

from gateway.simulator.app import Simulator
from gateway.simulator.behaviour import CONTEXT_LENGTH_MESSAGE, Behaviour
from gateway.simulator.flavours import FLAVOURS
from gateway.simulator.records import RecordedRequest, StreamOutcome, StreamRecord
from gateway.simulator.server import SimulatorServer

__all__ = [
    "CONTEXT_LENGTH_MESSAGE",
    "FLAVOURS",
    "Behaviour",
    "RecordedRequest",
    "Simulator",
    "SimulatorServer",
    "StreamOutcome",
    "StreamRecord",
]
