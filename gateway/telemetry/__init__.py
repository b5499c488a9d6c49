"""Observability: traces (OpenTelemetry), `/metrics` (Prometheus), request log lines, the prompt log.

`wiring.open_telemetry` builds it all at start-up; nothing is imported here so that the
config can name `prompt_config` without pulling in the rest.
"""
