"""The `prompt_log` section of the YAML config: who is monitored, how much is kept, for how long."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Replaced by `[REDACTED]` before anything is stored (unless `redact_defaults: false`).
DEFAULT_REDACTIONS: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "card_number": r"\b\d(?:[ -]?\d){12,18}\b",
    "api_key": r"\b(?:sk|pk|rk|gw|gsk|xai|key|api)[-_][A-Za-z0-9_-]{16,}|\bAKIA[0-9A-Z]{16}\b",
    "bearer_token": r"(?i:\bbearer)\s+[A-Za-z0-9._~+/-]{16,}=*",
}


class PromptLogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False  # every request, except those that opt out
    models: list[str] = Field(default_factory=list)  # these models' requests, even when not enabled
    keys: list[str] = Field(default_factory=list)  # these virtual keys (name or id), even when not enabled
    exclude_keys: list[str] = Field(default_factory=list)  # never these keys (name or id)
    allow_data_collection_deny: bool = False  # also requests sent with provider.data_collection "deny"
    max_chars: int = Field(20_000, gt=0)  # per stored body; longer ones are cut and the cut reported
    retention_days: float = Field(30.0, gt=0)
    purge_interval_s: float = Field(3600.0, gt=0)  # how often expired rows are deleted
    redact_defaults: bool = True
    redact_patterns: list[str] = Field(default_factory=list)  # extra regular expressions

    @field_validator("redact_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {pattern!r} ({exc})") from None
        return patterns

    @property
    def active(self) -> bool:
        return self.enabled or bool(self.models) or bool(self.keys)
