"""Prompt monitoring: which requests are kept, and turning one into a stored row.

Deciding is cheap and happens on the request (`PromptPolicy.wants`); everything else
— serialising, redacting, capping — happens in the prompt log's background writer
(`PromptLogWriter`), never on the response path. The patterns are compiled once, at
start-up. A request is never kept when it opts out (`X-Gateway-Prompt-Log: off`), its
key is excluded, or it asks for `data_collection: deny` (unless the config allows it).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from gateway.records import RequestRecord
from gateway.telemetry.prompt_config import DEFAULT_REDACTIONS, PromptLogConfig

if TYPE_CHECKING:
    from starlette.requests import Request

    from gateway.auth import Principal
    from gateway.runtime import Runtime
    from router_policies.router import Plan

OPT_OUT_HEADER = "x-gateway-prompt-log"
REDACTED = "[REDACTED]"
_OFF = frozenset({"off", "false", "0", "no", "deny"})


class PromptPolicy:
    def __init__(self, config: PromptLogConfig) -> None:
        self.config = config
        self.active = config.active
        self._keys = frozenset(config.keys)
        self._excluded = frozenset(config.exclude_keys)
        self._models = frozenset(config.models)
        patterns = [*(DEFAULT_REDACTIONS.values() if config.redact_defaults else ()), *config.redact_patterns]
        self._redact = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None

    def wants(
        self, headers: Any, key_id: str | None, key_name: str, model: str, data_collection: str | None
    ) -> bool:
        if not self.active:
            return False
        if headers.get(OPT_OUT_HEADER, "").strip().lower() in _OFF:
            return False
        if key_name in self._excluded or (key_id is not None and key_id in self._excluded):
            return False
        if data_collection == "deny" and not self.config.allow_data_collection_deny:
            return False
        return (
            self.config.enabled
            or model in self._models
            or key_name in self._keys
            or (key_id is not None and key_id in self._keys)
        )

    def redact(self, text: str) -> str:
        return self._redact.sub(REDACTED, text) if self._redact is not None else text

    def row(self, record: RequestRecord) -> dict[str, Any]:
        """The stored row: each body redacted, then cut to `max_chars`; `original_chars` says what was cut."""
        prompt = record.prompt or {}
        cap = self.config.max_chars
        row: dict[str, Any] = {
            "request_id": record.request_id,
            "created_at": record.created_at,
            "key_id": record.key_id,
            "model": record.model,
            "cap_chars": cap,
            "original_chars": {},
        }
        for field in ("messages", "augmented", "answer"):
            value = prompt.get(field)
            if value is None:
                row[field] = None
                continue
            text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
            text = self.redact(text)
            if len(text) > cap:
                row["original_chars"][field] = len(text)
                text = text[:cap]
            row[field] = text
        return row


def keep_prompt(
    runtime: Runtime, request: Request, principal: Principal, plan: Plan, body: dict[str, Any]
) -> dict[str, Any] | None:
    """What a kept request starts its `record.prompt` with (its messages), or None when not kept."""
    telemetry = runtime.telemetry
    if telemetry is None or not telemetry.prompts.active:
        return None
    model = plan.groups[0].name
    if not telemetry.prompts.wants(
        request.headers, principal.key_id, principal.name, model, plan.prefs.data_collection
    ):
        return None
    return {"messages": list(body.get("messages") or ())}
