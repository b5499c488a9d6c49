"""Test harness: real servers on loopback ports, each in its own thread and event loop.

The gateway under test runs exactly as in production (uvicorn, uvloop, httptools,
the real app factory); tests talk to it over HTTP with the openai SDK, httpx or curl.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from typing import Any

import uvicorn

from gateway.app import create_app
from gateway.config import parse_config
from gateway.settings import Settings

STARTUP_TIMEOUT_S = 20.0


class ServerThread:
    """An ASGI app served by uvicorn on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            lifespan="on",
            log_level="warning",
            access_log=False,
            loop="uvloop",
            http="httptools",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"server-{self.port}")
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        import uvloop

        self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._server.serve(sockets=[self._sock]))

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("server thread died during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start in time")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{os.environ.get('TMPDIR', '/tmp')}/gw-test.db"
    }
    base.update(overrides)
    return Settings(**base)


def start_gateway(config_yaml: str, **setting_overrides: Any) -> ServerThread:
    config = parse_config(config_yaml, "test-config.yaml")
    return ServerThread(create_app(settings(**setting_overrides), config)).start()


def config_for(
    fakes: dict[str, str],
    models: dict[str, list[tuple[str, str]]] | None = None,
    *,
    policy: str | None = "price",
    **extra: Any,
) -> str:
    """YAML for providers named after `fakes` (name -> base URL), one model per provider by default.

    `models` maps a model name to (provider, upstream model) pairs, in order. Every
    deployment has the same price, so the default `policy="price"` (a stable strict
    sort) tries them in the order given; `policy=None` leaves the gateway's default.
    """
    lines = ["providers:"]
    for name, url in fakes.items():
        lines += [f"  - name: {name}", f"    base_url: {url}"]
        for key, value in extra.get(name, {}).items():
            lines.append(f"    {key}: {value}")
    lines.append("models:")
    models = models or {"m": [(name, f"{name}-model") for name in fakes]}
    for model, deployments in models.items():
        lines += [f"  - name: {model}"]
        if policy is not None:
            lines += ["    routing:", f"      policy: {policy}"]
        lines += ["    deployments:"]
        for provider, upstream in deployments:
            lines += [
                f"      - provider: {provider}",
                f"        model: {upstream}",
                "        input_price_per_mtok: 1.0",
                "        output_price_per_mtok: 2.0",
            ]
    return "\n".join(lines) + "\n"
