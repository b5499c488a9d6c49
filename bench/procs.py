"""Starting, probing and stopping the processes a benchmark measures.

The fake upstream and the gateway each run in their own process, so neither shares
a GIL or an event loop with the load generator. Every wait is bounded, a process
that dies while starting is reported with the tail of its log, and `stop()` always
ends the process (SIGTERM, then SIGKILL) — callers use it in `finally`.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_LOG_TAIL_CHARS = 3000


class StartError(RuntimeError):
    """A benchmarked process did not become ready; the message carries its log tail."""


@dataclass
class Proc:
    """A started child process and the file its output goes to."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return text[-_LOG_TAIL_CHARS:]

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the process has used so far (Linux /proc), else None."""
        try:
            raw = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return None
        fields = raw[raw.rindex(")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def rss_kb(self) -> int | None:
        """Resident set size in kB (VmRSS from /proc/<pid>/status), else None."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return None

    def open_fds(self) -> int | None:
        """How many file descriptors the process has open (entries of /proc/<pid>/fd), else None."""
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return None

    def stop(self) -> None:
        """SIGTERM, wait (bounded), then SIGKILL; never raises."""
        if self.popen.poll() is None:
            with contextlib.suppress(OSError):
                self.popen.terminate()
            try:
                self.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    self.popen.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(STOP_TIMEOUT_S)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def python_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for `python -m bench.…` children: the repository root on PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _log_file(workdir: Path, name: str) -> tuple[Path, int]:
    path = workdir / f"{name}.log"
    return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)


def start_upstream(
    workdir: Path, completion_tokens: int, timeout_s: float = START_TIMEOUT_S, chunk_gap_ms: float = 0
) -> tuple[Proc, str]:
    """Start `python -m bench.upstream`; return it and its base URL (ending in /v1)."""
    log_path, log_fd = _log_file(workdir, "upstream")
    command = [sys.executable, "-m", "bench.upstream", "--completion-tokens", str(completion_tokens)]
    if chunk_gap_ms:
        command += ["--chunk-gap-ms", str(chunk_gap_ms)]
    try:
        popen = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log_fd,
            stdin=subprocess.DEVNULL,
            env=python_env(),
        )
    finally:
        os.close(log_fd)
    proc = Proc("upstream", popen, log_path)
    try:
        url = _read_url_line(proc, timeout_s)
    except BaseException:
        proc.stop()
        raise
    return proc, url


def _read_url_line(proc: Proc, timeout_s: float) -> str:
    stdout = proc.popen.stdout
    assert stdout is not None
    deadline = time.monotonic() + timeout_s
    buffer = b""
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StartError(f"the fake upstream printed no URL within {timeout_s:.0f}s\n{proc.log_tail()}")
        readable, _, _ = select.select([stdout], [], [], min(remaining, 0.1))
        if readable:
            data = os.read(stdout.fileno(), 4096)
            if not data:
                raise StartError(f"the fake upstream exited while starting\n{proc.log_tail()}")
            buffer += data
    url = buffer.split(b"\n", 1)[0].decode().strip()
    if not url.startswith("http://"):
        raise StartError(f"the fake upstream printed {url!r} instead of a URL\n{proc.log_tail()}")
    return url


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def gateway_config(upstream_base_url: str, upstream_model: str, model: str) -> str:
    """A one-provider, one-deployment config pointing at the fake upstream (prices given: no litellm)."""
    return (
        "providers:\n"
        "  - name: bench-upstream\n"
        "    kind: openai\n"
        f"    base_url: {upstream_base_url}\n"
        "models:\n"
        f"  - name: {model}\n"
        "    deployments:\n"
        "      - provider: bench-upstream\n"
        f"        model: {upstream_model}\n"
        "        input_price_per_mtok: 0.15\n"
        "        output_price_per_mtok: 0.6\n"
    )


def gateway_env(http_client: str) -> dict[str, str]:
    # The repository root on PYTHONPATH: the gateway then imports its packages (and
    # `migrations`, which the editable install may map as a namespace package) from
    # the working tree as regular packages, whatever the working directory.
    env = python_env()
    for name in ("GATEWAY_ADMIN_KEY", "GATEWAY_CONFIG", "gateway_admin_key", "gateway_config"):
        env.pop(name, None)
    env["GATEWAY_HTTP_CLIENT"] = http_client
    env["GATEWAY_LOG_LEVEL"] = "warning"  # no per-request log lines in the measured path
    return env


def _gateway_command() -> list[str]:
    script = Path(sys.executable).with_name("gateway")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "gateway.cli"]


def start_gateway(
    workdir: Path, config_text: str, http_client: str, extra_env: dict[str, str] | None = None
) -> tuple[Proc, str]:
    """Start `gateway serve` on a free loopback port; return it and its root URL once /health answers."""
    config_path = workdir / f"gateway-{http_client}.yaml"
    config_path.write_text(config_text, encoding="utf-8")
    command = [*_gateway_command(), "serve", "--config", str(config_path), "--host", "127.0.0.1", "--port"]
    env = {**gateway_env(http_client), **(extra_env or {})}
    return start_server(workdir, f"gateway-{http_client}", command, env)


def start_passthrough(workdir: Path, upstream_root: str, http_client: str) -> tuple[Proc, str]:
    """Start `python -m bench.passthrough` (the floor) on a free loopback port."""
    command = [sys.executable, "-m", "bench.passthrough", "--upstream", upstream_root]
    command += ["--client", http_client, "--port"]
    return start_server(workdir, f"passthrough-{http_client}", command, python_env())


def start_server(
    workdir: Path,
    name: str,
    command: list[str],
    env: dict[str, str],
    timeout_s: float = START_TIMEOUT_S,
    attempts: int = 3,
    health_path: str = "/health",
) -> tuple[Proc, str]:
    """Run `command + [port]` on a free loopback port; return it and its root URL once `health_path` answers.

    The port is picked by binding port 0 and releasing it, so another process may take
    it first; a server that exits while starting because of that is retried on a new port.
    """
    last_error: StartError | None = None
    for _ in range(attempts):
        port = free_port()
        log_path, log_fd = _log_file(workdir, name)
        try:
            popen = subprocess.Popen(
                [*command, str(port)],
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=workdir,  # anything it writes (the gateway's ./data) stays in the temp dir
            )
        finally:
            os.close(log_fd)
        proc = Proc(name, popen, log_path)
        root = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(proc, root + health_path, timeout_s)
        except StartError as exc:
            exited = popen.poll() is not None
            proc.stop()
            if not exited or "address already in use" not in proc.log_tail().lower():
                raise
            last_error = exc
            continue
        except BaseException:
            proc.stop()
            raise
        return proc, root
    assert last_error is not None
    raise last_error


def wait_healthy(proc: Proc, url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.popen.poll() is not None:
            raise StartError(
                f"{proc.name} exited with status {proc.popen.returncode} while starting\n{proc.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise StartError(f"{proc.name} did not answer {url} within {timeout_s:.0f}s\n{proc.log_tail()}")
        time.sleep(0.05)


def new_workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="bench-")
