"""Shared fixtures: fake upstream providers and gateways, all real HTTP servers on loopback."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import asyncio
import threading
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from gateway.simulator import Behaviour, Simulator, SimulatorServer
from tests.harness import ServerThread, new_test_namespace, scrub_developer_env, start_gateway

scrub_developer_env()  # a developer's REDIS_URL, DATABASE_URL, GATEWAY_*, OTEL_* never reach a test


class Fake:
    """A running fake upstream: `sim` to steer and inspect it, `url` to reach it."""

    def __init__(self, sim: Simulator, server: SimulatorServer, url: str) -> None:
        self.sim = sim
        self.server = server
        self.url = url


@pytest.fixture(autouse=True)
def _isolated_namespace() -> str:
    """Each test's gateways share a Redis key prefix of their own (see harness.current_namespace)."""
    return new_test_namespace()


@pytest.fixture
def fake() -> Iterator[Callable[..., Fake]]:
    started: list[SimulatorServer] = []

    def make(flavour: str = "openai", behaviour: Behaviour | None = None, name: str | None = None) -> Fake:
        sim = Simulator(flavour, behaviour, name=name)
        server = SimulatorServer(sim)
        url = server.start_in_thread()
        started.append(server)
        return Fake(sim, server, url)

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def gateway() -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def make(config_yaml: str, **settings: Any) -> ServerThread:
        server = start_gateway(config_yaml, **settings)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def local_embedder() -> Iterator[Any]:
    """The real local embedder, loaded once per session (gateways in this process share the model)."""
    from rag.embedders import LocalEmbedder

    embedder = LocalEmbedder()
    embedder.load()
    yield embedder
    embedder.close()


class HandClock:
    """A `time.monotonic` that moves only when a test moves `now`."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def hand_clock(monkeypatch: pytest.MonkeyPatch) -> HandClock:
    """The clock of the router's attempt loop, executor and attempt log, moved by hand: an attempt's
    elapsed time, time to first token and throughput become exact figures. asyncio keeps its own."""
    from router_policies import attempts, executor, runner

    clock = HandClock()
    fake_time = SimpleNamespace(monotonic=clock.monotonic)
    for module in (attempts, executor, runner):
        monkeypatch.setattr(module, "time", fake_time)
    return clock


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays this test's own thread asks asyncio.sleep for (tenacity's waits); each returns at once."""
    asked: list[float] = []
    real_sleep, me = asyncio.sleep, threading.get_ident()

    async def recorded(delay: float, result: object = None) -> object:
        if threading.get_ident() != me:  # another thread's loop (a leftover server): untouched
            return await real_sleep(delay, result)
        asked.append(delay)
        return await real_sleep(0, result)

    monkeypatch.setattr(asyncio, "sleep", recorded)
    return asked


class Collector(SpanProcessor):
    """Keeps finished spans while a test is collecting; drops them otherwise."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] | None = None
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            if self.spans is not None:
                self.spans.append(span)

    def of_trace(self, trace_id: int) -> list[ReadableSpan]:
        with self._lock:
            return [s for s in self.spans or () if s.context.trace_id == trace_id]


_COLLECTOR = Collector()


@pytest.fixture
def spans() -> Iterator[Collector]:
    """Finished spans of this test, from the process's tracer provider (installed once: OpenTelemetry
    allows one per process)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(_COLLECTOR)
        trace.set_tracer_provider(provider)
    _COLLECTOR.spans = []
    yield _COLLECTOR
    _COLLECTOR.spans = None
