"""Test harness: real servers on loopback ports, each in its own thread and event loop.

The gateway under test runs exactly as in production (uvicorn, uvloop, httptools,
the real app factory); tests talk to it over HTTP with the openai SDK, httpx or curl.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from gateway.app import create_app
from gateway.config import parse_config
from gateway.server import server_config
from gateway.settings import Settings
from gateway.simulator.server import EmbeddedServer

STARTUP_TIMEOUT_S = 20.0

# Variables a gateway process reads from its environment. Test gateways get none of the
# developer's: only what a test passes (see clean_env and IsolatedSettings).
_GATEWAY_ENV_PREFIXES = ("GATEWAY_", "OTEL_")


def _settings_env_names() -> set[str]:
    """Every variable a Settings field reads (DATABASE_URL, REDIS_URL, QDRANT_PATH, …), from its aliases."""
    from pydantic import AliasChoices

    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        names |= {c.upper() for c in choices if isinstance(c, str)}
    return names


_GATEWAY_ENV_NAMES = _settings_env_names()

# The test that is running: gateways started within one test share a Redis namespace
# (they are replicas of one deployment); gateways of different tests never do.
_namespace = ["gwtest-" + uuid.uuid4().hex[:12]]


def new_test_namespace() -> str:
    """Start a fresh namespace (called before every test by an autouse fixture)."""
    _namespace[0] = "gwtest-" + uuid.uuid4().hex[:12]
    return _namespace[0]


def current_namespace() -> str:
    """The Redis key prefix that gateways of the running test use unless their config names one."""
    return _namespace[0]


def reserve_port() -> socket.socket:
    """A bound (not listening) loopback socket that holds a free port until it is closed.

    SO_REUSEADDR lets a server we start (uvicorn, redis-server: both set it) bind and
    listen on the same port meanwhile, while the kernel hands it to nobody else, so no
    parallel test can take the port between choosing it and the server binding it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


_TEST_CONTROLS = ("GATEWAY_REQUIRE_SERVICES", "GATEWAY_TEST_")  # read by the tests, not by gateways


def _read_by_gateways(name: str) -> bool:
    if name.startswith(_TEST_CONTROLS):
        return False
    return name in _GATEWAY_ENV_NAMES or name.startswith(_GATEWAY_ENV_PREFIXES)


def scrub_developer_env() -> list[str]:
    """Drop what gateways read from this process's environment (libraries such as the
    OpenTelemetry SDK read OTEL_* themselves); returns the names dropped."""
    dropped = [name for name in os.environ if _read_by_gateways(name)]
    for name in dropped:
        del os.environ[name]
    return dropped


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without anything a gateway reads (DATABASE_URL, REDIS_URL, GATEWAY_*…), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not _read_by_gateways(k)}
    env.update(extra)
    return env


class ServerThread:
    """An ASGI app served by uvicorn on 127.0.0.1:<free port> in a daemon thread.

    With `settings`, the server is configured exactly as `gateway serve` configures it
    (gateway.server: the HTTP limits); without, it is a plain uvicorn (fake upstreams).
    """

    def __init__(self, app: Any, settings: Settings | None = None) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        options: dict[str, Any] = {
            "lifespan": "on",
            "log_level": "warning",
            "access_log": False,
            "timeout_graceful_shutdown": 2,
        }
        if settings is not None:
            config = server_config(app, settings, **options)
        else:
            config = uvicorn.Config(app, loop="uvloop", http="httptools", **options)
        self._server = EmbeddedServer(config)
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"server-{self.port}")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_stop: list[Callable[[], None]] = []
        self.loop_errors: list[str] = []  # what reached the loop's exception handler

    def _run(self) -> None:
        import uvloop

        self.loop = uvloop.new_event_loop()
        self.loop.set_exception_handler(self._on_loop_error)
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._server.serve(sockets=[self._sock]))

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.loop_errors.append(str(context.get("message")))
        loop.default_exception_handler(context)

    def report_unclosed(self) -> None:
        """From now on, an upstream response dropped without being closed shows in `unclosed()`.

        aiohttp reports a response that is garbage-collected while still open only when the
        loop is in debug mode; collection closes the socket too, so without this a gateway
        that never closes an upstream looks, from outside, like one that does.
        """

        async def debug_on() -> None:
            asyncio.get_running_loop().set_debug(True)

        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(debug_on(), self.loop).result(timeout=5)

    def unclosed(self) -> list[str]:
        """Upstream responses the gateway dropped without closing them (see `report_unclosed`)."""
        import gc

        gc.collect()
        return [m for m in self.loop_errors if m.startswith("Unclosed")]

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
        self._server.exit_soon()
        self._thread.join(timeout=10)
        self._sock.close()
        for cleanup in self.on_stop:
            cleanup()
        self.on_stop.clear()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class IsolatedSettings(Settings):
    """Settings from the arguments only: no environment variables, no .env file.

    A developer's exported REDIS_URL, DATABASE_URL or GATEWAY_* must not change what a
    test gateway does, so every source but the constructor's arguments is dropped.
    """

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[Any],
        init_settings: Any,
        env_settings: Any,
        dotenv_settings: Any,
        file_secret_settings: Any,
    ) -> tuple[Any, ...]:
        return (init_settings,)


def settings(home: Path | None = None, **overrides: Any) -> Settings:
    """Settings of one test gateway: its own SQLite file, ledger spool and RAG store under `home`
    (a fresh temporary directory, removed at exit, when not given)."""
    if home is None:
        import atexit

        home = Path(tempfile.mkdtemp(prefix="gw-"))
        atexit.register(shutil.rmtree, home, True)
    base: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{home}/gateway.db",
        "ledger_spool_dir": home / "spool",
    }
    if "qdrant_path" in Settings.model_fields:  # RAG's embedded store: never ./data of the checkout
        base["qdrant_path"] = home / "qdrant"
    base.update(overrides)
    return IsolatedSettings(_env_file=None, **base)


def start_gateway(config_yaml: str, **setting_overrides: Any) -> ServerThread:
    """A gateway in a thread with its own temp dir (database, spool, RAG store; removed on stop)
    and the test's Redis namespace."""
    config = parse_config(config_yaml, "test-config.yaml")
    if "state_prefix" not in config.routing.model_fields_set:
        config.routing.state_prefix = current_namespace()
    home = Path(tempfile.mkdtemp(prefix="gw-"))
    try:
        resolved = settings(home, **setting_overrides)
        server = ServerThread(create_app(resolved, config), resolved)
        server.on_stop.append(lambda: shutil.rmtree(home, ignore_errors=True))
        return server.start()
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)
        raise


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


def new_key(base: str, admin: str = "admin-secret", **spec: Any) -> dict[str, Any]:
    """Create a virtual key through the admin API; its record, with the secret under "key"."""
    made = httpx.post(
        f"{base}/admin/api/keys", json={"name": "k", **spec}, headers={"authorization": f"Bearer {admin}"}
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


# --- Services (PostgreSQL, Redis) and the accounts side of a running gateway ---

PG_HOST, PG_PORT, REDIS_HOST_PORT = "127.0.0.1", 5432, ("127.0.0.1", 6379)


def service_missing(name: str) -> None:
    """Skip a test whose service is absent — or fail it when GATEWAY_REQUIRE_SERVICES=1 (CI)."""
    import pytest

    if os.environ.get("GATEWAY_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{name} is required (GATEWAY_REQUIRE_SERVICES=1) but not reachable")
    pytest.skip(f"{name} not reachable on 127.0.0.1")


def redis_url() -> str:
    """The local Redis, or skip/fail."""
    try:
        with socket.create_connection(REDIS_HOST_PORT, timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                return "redis://127.0.0.1:6379/0"
    except OSError:
        pass
    service_missing("Redis")
    raise AssertionError("unreachable")


def _pg_user() -> str | None:
    import asyncpg

    async def probe(user: str) -> bool:
        try:
            conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=user, database="test", timeout=3)
        except Exception:
            return False
        await conn.close()
        return True

    for user in ("postgres", "root"):
        if asyncio.run(probe(user)):
            return user
    return None


def postgres_database() -> tuple[str, Any]:
    """A fresh database on the local PostgreSQL: (async URL, drop callable); or skip/fail."""
    import asyncpg

    user = _pg_user()
    if user is None:
        service_missing("PostgreSQL")
    name = "gw_test_" + os.urandom(6).hex()

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=user, database="test", timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    return (
        f"postgresql+asyncpg://{user}@{PG_HOST}:{PG_PORT}/{name}",
        lambda: asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')),
    )


def database_url(kind: str, tmp_path: Any) -> tuple[str, Any]:
    """A fresh database of `kind` ("sqlite" or "postgres") and a callable that removes it."""
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/gateway.db", lambda: None
    return postgres_database()


def runtime_of(server: ServerThread) -> Any:
    """The live Runtime inside an in-thread gateway (for counting queries, flushing the ledger)."""
    app: Any = server._server.config.app
    while not hasattr(app, "state"):
        app = app.app
    return app.state.runtime


def curl_stream(url: str, body: str, *, include_headers: bool = False) -> str:
    """POST `body` to the gateway's chat endpoint with `curl -N`, as a user would; the raw output."""
    args = [
        "curl",
        "-sN",
        "--max-time",
        "20",
        f"{url}/v1/chat/completions",
        "-H",
        "content-type: application/json",
    ]
    if include_headers:
        args.append("-D-")
    result = subprocess.run([*args, "-d", body], capture_output=True, timeout=30, check=True)
    return result.stdout.decode()


def generation_record(url: str, request_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """The gateway's stored record of a finished request (booking happens just after the response)."""

    def fetch() -> dict[str, Any] | None:
        response = httpx.get(f"{url}/v1/generation", params={"id": request_id}, timeout=5)
        return response.json()["data"] if response.status_code == 200 else None

    return wait_for(fetch, timeout_s)


def wait_for(predicate: Any, timeout_s: float = 10.0, interval_s: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last value {value!r})")
        time.sleep(interval_s)


async def async_wait_for(predicate: Any, timeout_s: float = 10.0, interval_s: float = 0.02) -> Any:
    """`wait_for` for code on the test's own event loop: polls without blocking the loop."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last value {value!r})")
        await asyncio.sleep(interval_s)


class GatewayProcess:
    """`gateway serve` as a real process (for SIGTERM and multi-replica tests); no config: the demo.

    Its environment is `clean_env(**env)`: none of the developer's gateway variables. Unless
    `env` says otherwise, its database and ledger spool live beside `log_path`. The port
    stays reserved until the process has bound it.
    """

    def __init__(
        self, config_path: Any, env: dict[str, str], log_path: Any, extra_args: tuple[str, ...] = ()
    ) -> None:
        import sys

        self._reservation = reserve_port()
        self.port = int(self._reservation.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        home = Path(log_path).parent
        defaults = {
            "DATABASE_URL": f"sqlite+aiosqlite:///{home}/gateway-{self.port}.db",
            "GATEWAY_LEDGER_SPOOL_DIR": str(home / f"spool-{self.port}"),
            "QDRANT_PATH": str(home / f"qdrant-{self.port}"),
        }
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "serve",
                "--port",
                str(self.port),
                *(["--config", str(config_path)] if config_path is not None else []),
                *extra_args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=clean_env(**{**defaults, **env}),
            cwd=str(home),
        )

    def wait_ready(self, timeout_s: float = 60.0) -> GatewayProcess:
        """Once /health answers. The bound is generous because a start on a loaded two-core machine
        can take tens of seconds; a process that never comes up is stopped, not left running to
        slow every test after it."""

        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"gateway exited early:\n{self.log_path.read_text()}")
            try:
                return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_for(up, timeout_s=timeout_s, interval_s=0.1)
        except BaseException:
            self.stop(timeout_s=5)
            raise
        finally:
            self._reservation.close()
        return self

    def kill(self) -> None:
        """SIGKILL: the process dies without any shutdown work."""
        self.process.kill()
        self.process.wait(timeout=5)
        self._log.close()

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, then wait (bounded); SIGKILL only if it hangs."""
        self._reservation.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()
        return int(self.process.returncode)


def serve_process(
    tmp_path: Any, config_yaml: str, env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()
) -> GatewayProcess:
    """`gateway serve` on `config_yaml` with its own SQLite ledger under `tmp_path`, once ready."""
    config = tmp_path / "gateway.yaml"
    config.write_text(config_yaml)
    base = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/gateway.db",
        "GATEWAY_LEDGER_SPOOL_DIR": str(tmp_path / "spool"),
    }
    return GatewayProcess(config, {**base, **(env or {})}, tmp_path / "serve.log", extra_args).wait_ready()
