"""Observability: traces (OpenTelemetry), `/metrics` (Prometheus), request log lines, the prompt log."""

from gateway.telemetry.wiring import Telemetry, open_telemetry

__all__ = ["Telemetry", "open_telemetry"]
