"""Log lines: the process's logging (`gateway serve --log-format json|text`) and one line per request.

Every line is either text (`time LEVEL logger: message key=value …`) or one JSON
object (`{"time", "level", "logger", "message", …fields}`). The request line (logger
`gateway.requests`, message `request`) is written once per finished request from its
record: request id, the key's *name* (never the key), model, deployment, provider,
status, error type, tokens, cost, latency, time to first token and the attempts.
Nothing of a request's body or headers is logged.

Formatting and writing happen on a listener thread behind a queue, so a request only
enqueues a log record; uvicorn's own loggers go through the same handler.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.ledger.writer import to_row
from gateway.records import RequestRecord

REQUEST_LOGGER = "gateway.requests"
# Libraries whose INFO lines are start-up chatter rather than news.
QUIET_LOGGERS = ("alembic", "httpx", "httpcore", "opentelemetry")

log = logging.getLogger(REQUEST_LOGGER)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line += "".join(f" {k}={v}" for k, v in fields.items() if v is not None)
        return line


def configure_logging(level: str, fmt: str) -> logging.handlers.QueueListener:
    """Route every logger through one queue to stderr in `fmt`; returns the (started) listener."""
    output = logging.StreamHandler(sys.stderr)
    output.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, output, respect_handler_level=False)
    listener.start()
    atexit.register(listener.stop)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(logging.handlers.QueueHandler(records))
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return listener


_LOGGED = (
    "model",
    "deployment",
    "provider",
    "status",
    "error",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "attempts",
    "streamed",
    "finish_reason",
)


def flush_before_sigterm(*flushers: Callable[[], object]) -> None:
    """Run `flushers` (the log queue, the span exporter) before a SIGTERM ends the process.

    uvicorn shuts down cleanly on SIGTERM and then raises the signal again with the
    handler that was in place before it started: this one. Left to the default
    handler, the process would die with queued log lines and batched spans unwritten
    (atexit does not run on a signal death). Main thread only, like every signal handler.
    """

    def flush_then_terminate(signum: int, frame: object) -> None:
        for flush in flushers:
            try:
                flush()
            except Exception:  # a failed flush must not keep the process alive
                continue
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, flush_then_terminate)


def request_fields(record: RequestRecord) -> dict[str, Any]:
    """The ledger row's fields worth a log line, with the key's name and the attempts' route."""
    row = to_row(record)
    fields: dict[str, Any] = {"request_id": record.request_id, "key": record.key_name}
    fields.update((name, row[name]) for name in _LOGGED)
    fields["latency_ms"] = round(record.latency_ms, 2)
    fields["ttft_ms"] = round(record.ttft_ms, 2) if record.ttft_ms is not None else None
    fields["route"] = ", ".join(f"{a.get('deployment')};{a.get('outcome')}" for a in record.attempts) or None
    return fields


class RequestLog:
    """A record sink: the one log line per request."""

    def record(self, record: RequestRecord) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info("request", extra={"fields": request_fields(record)})
