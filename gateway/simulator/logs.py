"""Keep the simulator out of the host process's logs without touching global logging config.

uvicorn logs through the process-wide `uvicorn.error` logger, which the gateway's
own server also uses. Setting that logger's level (what `Config(log_level=...)`
does) would hide the gateway's startup banner in demo mode. Instead a filter,
installed once, drops only records produced on the simulator's behalf, marked by
context variables:

- `quiet_context()` runs the simulator's server: its records below WARNING are dropped.
- `mark_deliberate_abort()` is called by a handler that cuts a connection on
  purpose (`die_after_chunks`). uvicorn then reports "ASGI callable returned
  without completing response" from the same task; that is the simulator working,
  not an error, so the record is dropped.
"""

from __future__ import annotations

import contextvars
import logging

_QUIET: contextvars.ContextVar[bool] = contextvars.ContextVar("simulator_quiet", default=False)
_ABORTING: contextvars.ContextVar[bool] = contextvars.ContextVar("simulator_aborting", default=False)


class _SimulatorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _ABORTING.get():
            return False
        return not (_QUIET.get() and record.levelno < logging.WARNING)


def _install() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _SimulatorFilter) for f in logger.filters):
        logger.addFilter(_SimulatorFilter())


def quiet_context() -> contextvars.Context:
    """A copy of the current context in which uvicorn's info-level chatter is dropped."""
    _install()
    context = contextvars.copy_context()
    context.run(_QUIET.set, True)
    return context


def mark_deliberate_abort() -> None:
    """Mute uvicorn's complaint about the response this task is about to leave unfinished."""
    _install()
    _ABORTING.set(True)
