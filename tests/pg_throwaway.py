"""A throwaway PostgreSQL server (initdb into a temp dir, its own port) that tests may stop and start.

Never the machine's shared server: this one exists only for the test that takes the
database away under load. As root, the server runs as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.harness import reserve_port, service_missing


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class ThrowawayPostgres:
    def __init__(self) -> None:
        initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if not initdb or not pg_ctl:
            service_missing("PostgreSQL server binaries (initdb, pg_ctl)")
        assert initdb and pg_ctl
        self._pg_ctl = pg_ctl
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.dir = Path(tempfile.mkdtemp(prefix="gw-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._reservation = reserve_port()  # held for the server's life, restarts included
        self.port = int(self._reservation.getsockname()[1])
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"
        self._run([initdb, "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres", "--no-sync"], 120)

    def _run(self, command: list[str], timeout_s: float) -> None:
        done = subprocess.run([*self._as, *command], capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stdout}\n{done.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.dir / "server.log")
        self._run(
            [self._pg_ctl, "-D", str(self.dir / "data"), "-o", options, "-l", log, "-w", "-t", "30", "start"],
            60,
        )

    def stop(self) -> None:
        self._run([self._pg_ctl, "-D", str(self.dir / "data"), "-m", "fast", "-w", "-t", "30", "stop"], 60)

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):  # already stopped
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        self._reservation.close()
