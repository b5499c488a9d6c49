"""The `routing` sections of the YAML config, validated like the rest (unknown fields fail).

Top level `routing:` holds what is global (breaker thresholds, the stats window, how
often to scrape vLLM and sync with Redis, per-key default preferences); a model's
`routing:` picks its policy, hedging, retries and default provider preferences.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from router_policies.policies import POLICIES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MaxPriceConfig(_Strict):
    prompt: float | None = Field(None, ge=0)
    completion: float | None = Field(None, ge=0)


class SortConfig(_Strict):
    by: Literal["price", "latency", "throughput"]
    partition: Literal["model", "none"] | None = None


class CutoffsConfig(_Strict):
    """A target per percentile (seconds to first token, or tokens per second)."""

    p50: float | None = Field(None, gt=0)
    p75: float | None = Field(None, gt=0)
    p90: float | None = Field(None, gt=0)
    p99: float | None = Field(None, gt=0)


class PrefsConfig(_Strict):
    """OpenRouter's `provider` object, as a default."""

    order: list[str] | None = None
    allow_fallbacks: bool | None = None
    only: list[str] | None = None
    ignore: list[str] | None = None
    sort: Literal["price", "latency", "throughput"] | SortConfig | None = None
    max_price: MaxPriceConfig | None = None
    data_collection: Literal["allow", "deny"] | None = None
    require_parameters: bool | None = None
    # A number is the p50; deployments that miss a target are only fallbacks.
    preferred_max_latency: float | CutoffsConfig | None = None  # seconds to first token
    preferred_min_throughput: float | CutoffsConfig | None = None  # tokens per second
    quantizations: (
        list[Literal["int4", "int8", "fp4", "fp6", "fp8", "fp16", "bf16", "fp32", "unknown"]] | None
    ) = None
    zdr: bool | None = None


class HedgeConfig(_Strict):
    enabled: bool = False
    default_delay_ms: float = Field(1000.0, gt=0)  # until the deployment has a p90 TTFT
    min_delay_ms: float = Field(20.0, ge=0)


class ModelRoutingConfig(_Strict):
    policy: str = "effective_price"
    hedge: HedgeConfig = Field(default_factory=HedgeConfig)
    defaults: PrefsConfig | None = None
    retries: int = Field(1, ge=0, le=5)  # extra rounds over the plan after all failed
    retry_max_wait_ms: float = Field(1000.0, ge=0)

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        if value not in POLICIES:
            raise ValueError(f"unknown policy {value!r}; known: {sorted(POLICIES)}")
        return value


class BreakerConfig(_Strict):
    failure_threshold: int = Field(3, ge=1)
    cooldown_ms: float = Field(10_000.0, gt=0)
    max_cooldown_ms: float = Field(300_000.0, gt=0)


class RoutingConfig(_Strict):
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    window_s: float = Field(300.0, gt=0)
    metrics_interval_ms: float = Field(2000.0, gt=0)
    state_sync_interval_ms: float = Field(250.0, gt=0)
    state_timeout_ms: float = Field(250.0, gt=0)
    state_prefix: str = Field("gw", min_length=1)
    seed: int | None = None  # fixes the weighted draws (tests, benchmarks)
    key_defaults: dict[str, PrefsConfig] = Field(default_factory=dict)
    # Send a key's long shared prompt prefix back to the deployment that served it last.
    prompt_cache_stickiness: bool = True
