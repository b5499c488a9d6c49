"""The ledger's local files: overflow rows while the database is away, and the write-ahead journal.

A `Spool` holds rows that could not stay in memory while the database was away; the
writer also keeps one as its journal, where every row is appended (one `write`, no
fsync) before the request's answer is complete and which is emptied whenever the
queue has been written. Both are drained the same way after a crash.

Each process appends to its own JSON-lines file and holds an exclusive `flock` on it
while it does; `sealed()` closes the current file so it can be drained, and returns
every drainable file for this database — our sealed ones and those left behind by a
process that died (its lock is gone). Draining twice is harmless: rows are keyed by
request id and inserted with ON CONFLICT DO NOTHING.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from pathlib import Path
from typing import IO, Any

import orjson


class Spool:
    def __init__(self, directory: Path, tag: str) -> None:
        self.directory = directory
        self.tag = tag
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self.rows_written = 0

    def append(self, rows: list[dict[str, Any]], sync: bool = False) -> None:
        if not rows:
            return
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._path = self.directory / f"ledger-{self.tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            self._file = open(self._path, "ab")  # noqa: SIM115 - held open (and locked) across calls
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._file.write(b"".join(orjson.dumps(row) + b"\n" for row in rows))
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())
        self.rows_written += len(rows)

    def truncate(self) -> None:
        """Forget every row appended so far (they are in the database); the file and its lock stay."""
        if self._file is not None and self.rows_written:
            self._file.seek(0)
            self._file.truncate()
            self.rows_written = 0

    def remove(self) -> None:
        """Close and delete this process's file: for a journal whose rows are all written or spooled."""
        path = self._path
        self.close()
        if path is not None:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()  # releases the lock: the file is now complete and drainable
            self._file = None
            self._path = None

    def sealed(self) -> list[Path]:
        """Files ready to drain: ours once closed, and orphans whose writer is gone."""
        self.close()
        if not self.directory.is_dir():
            return []
        ready = []
        for path in sorted(self.directory.glob(f"ledger-{self.tag}-*.jsonl")):
            try:
                with open(path, "rb") as probe:
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(probe, fcntl.LOCK_UN)
            except BlockingIOError:
                continue  # another live process is still appending to it
            except FileNotFoundError:
                continue
            ready.append(path)
        return ready

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        rows = []
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    try:
                        rows.append(orjson.loads(line))
                    except orjson.JSONDecodeError:
                        continue  # a torn last line from a crash: the rest is still good
        return rows
