"""`SimulatorServer`: serve a `Simulator` over real HTTP on loopback.

Real sockets rather than an in-process ASGI transport, because what is under test
is the gateway's HTTP behaviour: connection pooling, chunked transfers that break,
disconnects that must propagate upstream within milliseconds.

The socket is bound in the constructor (port 0 → the OS picks), so the URL is
known before serving and parallel tests never race for a port. Two ways to run:

- `start_in_thread()` / `stop()` (or `with SimulatorServer(sim) as base_url:`) —
  uvicorn on its own event loop in a daemon thread, for sync tests and benchmarks;
- `await serve_in_loop()` / `await shutdown()` (or `async with`) — a task on the
  caller's loop, for the gateway's demo mode.

Every wait is bounded. Stopping first ends open responses (`release_streams`) so a
hanging stream cannot hold shutdown hostage.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.simulator.app import Simulator
from gateway.simulator.logs import quiet_context

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server run inside a host (the gateway's demo, a test): it leaves signal handling
    to the host, and stops as soon as `exit_soon()` asks rather than at uvicorn's next 0.1 s tick
    and its fixed 0.1 s grace for connections when none is open (tests start and stop hundreds).
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        """uvicorn's loop of ticks (the date header, `should_exit`), woken early by `exit_soon`."""
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)

    def exit_soon(self) -> None:
        """Ask the server to stop; safe from any thread."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: it is stopping already
                loop.call_soon_threadsafe(wake.set)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.server_state.connections or self.server_state.tasks:
            await super().shutdown(sockets)  # connections to close gracefully: uvicorn's way
            return
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()


def _protocol_class() -> type:
    """uvicorn's HTTP protocol with access logging off for this server only.

    `Config(access_log=False)` would strip the handlers of the process-wide
    `uvicorn.access` logger, silencing the gateway's own access log too.
    """
    base: type
    if importlib.util.find_spec("httptools") is not None:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        base = HttpToolsProtocol
    else:
        base = H11Protocol

    class _Quiet(base):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.access_log = False

    return _Quiet


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class SimulatorServer:
    """Serves one `Simulator`; single use (start once, stop once)."""

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self._sock = _bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            sim,
            lifespan="off",
            log_config=None,
            log_level=None,
            access_log=False,
            http=_protocol_class(),
            ws="none",
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=2,
        )
        self._server = EmbeddedServer(config)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    @property
    def root_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as `base_url`."""
        return self.root_url + "/v1"

    # -- in a thread -----------------------------------------------------------------------

    def start_in_thread(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Serve from a daemon thread; return the base URL once connections are accepted."""
        if self._thread is not None or self._task is not None:
            raise RuntimeError("SimulatorServer is single use and already started")
        self._thread = threading.Thread(
            target=self._thread_main, name=f"simulator-{self.sim.name}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"simulator {self.sim.name!r} failed to start") from self._error
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"simulator {self.sim.name!r} did not start within {timeout_s}s")
            time.sleep(0.002)
        return self.base_url

    def _thread_main(self) -> None:
        loop = _new_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            task = loop.create_task(self._server.serve(sockets=[self._sock]), context=quiet_context())
            loop.run_until_complete(task)
        except BaseException as exc:
            self._error = exc
        finally:
            loop.close()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop the thread's server (bounded); raises if it would not stop."""
        thread, loop = self._thread, self._loop
        if thread is None:
            self._sock.close()
            return
        if loop is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed in the meantime
                loop.call_soon_threadsafe(self.sim.release_streams)
        self._server.exit_soon()
        thread.join(timeout_s)
        if thread.is_alive():
            self._server.force_exit = True
            thread.join(2.0)
        if thread.is_alive():
            raise RuntimeError(f"simulator {self.sim.name!r} did not stop within {timeout_s}s")

    def __enter__(self) -> str:
        return self.start_in_thread()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- in the caller's loop --------------------------------------------------------------

    async def serve_in_loop(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Serve as a task on the running loop; return the base URL once connections are accepted.

        Returns after start-up rather than when serving ends, so the caller can go on
        (e.g. start the gateway) and later `await shutdown()`.
        """
        if self._thread is not None or self._task is not None:
            raise RuntimeError("SimulatorServer is single use and already started")
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._server.serve(sockets=[self._sock]), context=quiet_context())
        deadline = loop.time() + timeout_s
        while not self._server.started:
            if self._task.done():
                cause = None if self._task.cancelled() else self._task.exception()
                raise RuntimeError(f"simulator {self.sim.name!r} failed to start") from cause
            if loop.time() > deadline:
                await self.shutdown()
                raise TimeoutError(f"simulator {self.sim.name!r} did not start within {timeout_s}s")
            await asyncio.sleep(0.002)
        return self.base_url

    async def shutdown(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop serving (bounded); open streams are ended first."""
        task = self._task
        if task is None:
            self._sock.close()
            return
        self.sim.release_streams()
        self._server.exit_soon()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            self._server.force_exit = True
            await asyncio.wait_for(task, 2.0)

    async def __aenter__(self) -> str:
        return await self.serve_in_loop()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()
