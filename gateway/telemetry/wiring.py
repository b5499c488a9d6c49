"""Builds a running gateway's telemetry at start-up: the metrics registry, the health probe
and the record sinks (metrics, the request log line), and closes them with the app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from gateway.telemetry.health import HealthProbe
from gateway.telemetry.logs import RequestLog
from gateway.telemetry.metrics import RequestMetrics, StateCollector
from gateway.telemetry.prompt_log import PromptLogWriter
from gateway.telemetry.prompts import PromptPolicy

if TYPE_CHECKING:
    from gateway.runtime import Runtime


@dataclass
class Telemetry:
    registry: CollectorRegistry
    metrics: RequestMetrics
    health: HealthProbe
    prompts: PromptPolicy


def _spool_bytes(directory: Path, tag: str) -> int:
    try:
        return sum(p.stat().st_size for p in directory.glob(f"ledger-{tag}-*.jsonl"))
    except OSError:
        return 0


def _live_state(runtime: Runtime, health: HealthProbe) -> dict[str, Any]:
    store = runtime.routing.router.store if runtime.routing is not None else None
    ledger = runtime.accounts.ledger if runtime.accounts is not None else None
    states = getattr(store, "states", None)
    return {
        "now": store.now() if store is not None else 0.0,
        "deployments": dict(states()) if states is not None else {},
        "queue": ledger.pending() if ledger is not None else 0,
        "spool_bytes": _spool_bytes(ledger.spool.directory, ledger.spool.tag) if ledger is not None else 0,
        "health": dict(health.status),
    }


def open_telemetry(runtime: Runtime) -> Telemetry:
    """Called once the accounts and routing exist; registers sinks and the closer on `runtime`."""
    registry = CollectorRegistry(auto_describe=False)
    metrics = RequestMetrics(registry)
    accounts = runtime.accounts
    health = HealthProbe(
        getattr(accounts, "engine", None),
        getattr(accounts, "redis", None),
        interval_s=runtime.settings.health_interval_s,
    )
    registry.register(StateCollector(lambda: _live_state(runtime, health)))
    runtime.sinks.extend([metrics, RequestLog()])
    health.start()
    runtime.closers.append(health.aclose)
    prompts = PromptPolicy(runtime.config.prompt_log)
    if prompts.active and accounts is not None:
        writer = PromptLogWriter(
            accounts.engine,
            prompts,
            flush_interval_s=runtime.settings.ledger_flush_interval_s,
            purge_interval_s=runtime.config.prompt_log.purge_interval_s,
        )
        writer.start()
        runtime.sinks.append(writer)
        runtime.closers.append(writer.aclose)
    return Telemetry(registry, metrics, health, prompts)
