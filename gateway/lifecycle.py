"""Graceful shutdown of one gateway process: not ready at once, streams finish, then stop.

On SIGTERM (or SIGINT) `Lifecycle` marks the process as shutting down, so `/ready`
answers 503 from that moment. It keeps serving for `drain_s` seconds (0 by default:
on Kubernetes the `preStop` hook plays that part) so a load balancer that polls
`/ready` can take the replica out, then hands the signal to uvicorn, which stops
accepting connections and waits for the requests in flight. Streams still open
`timeout_s` seconds after the signal are ended by their relay with one error chunk
(`code` 503, `error_type` "shutting_down") and `[DONE]`, the same shape as any
mid-stream failure; uvicorn cancels whatever is still left a few seconds later
(`hard_timeout_s`). Then the app's lifespan closes the runtime, which flushes the
ledger.

The signal handler wraps the one uvicorn installed (it is installed in the lifespan,
after uvicorn's), so uvicorn's own shutdown is unchanged; only the main thread can
own signals, so servers run in other threads (tests) call `begin_shutdown` directly.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger("gateway")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HARD_TIMEOUT_SLACK_S = 5.0


def hard_timeout_s(drain_s: float, timeout_s: float) -> float:
    """uvicorn's `timeout_graceful_shutdown`: past our stream deadline, so the error chunks go out first."""
    return drain_s + timeout_s + HARD_TIMEOUT_SLACK_S


class Lifecycle:
    """Whether this process is shutting down, and whether its open streams are past their deadline."""

    def __init__(self, drain_s: float = 0.0, timeout_s: float = 30.0) -> None:
        self.drain_s = drain_s
        self.timeout_s = timeout_s
        self.draining = False  # `/ready` answers 503
        self.expired = False  # streams still open must end now
        self.open_streams = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Wrap the process's SIGTERM/SIGINT handlers (uvicorn's); a no-op outside the main thread."""
        self._loop = asyncio.get_running_loop()
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in _SIGNALS:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, previous)
        self._previous.clear()

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        first = not self.draining
        self.begin_shutdown()
        previous = self._previous.get(sig)
        if not callable(previous):
            return
        if first and self.drain_s > 0 and self._loop is not None:
            log.info("shutting down: not ready; still accepting for %.1fs", self.drain_s)
            self._loop.call_soon_threadsafe(self._loop.call_later, self.drain_s, previous, sig, None)
        else:
            previous(sig, frame)  # a second signal is not delayed

    def begin_shutdown(self) -> None:
        """Not ready from now on; streams get `timeout_s` (after the drain) to finish. Idempotent."""
        if self.draining:
            return
        self.draining = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(
                self._loop.call_later, self.drain_s + self.timeout_s, self._expire
            )

    def _expire(self) -> None:
        self.expired = True
        if self.open_streams:
            log.warning(
                "shutdown deadline (%.0fs) reached: ending %d open stream(s) with an error chunk",
                self.timeout_s,
                self.open_streams,
            )
