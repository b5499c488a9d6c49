"""A deployment: one provider serving one model under one upstream name, with its prices.

Built by the gateway from its config; the router only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from providers.types import Adapter, Timeouts, Usage


@dataclass(frozen=True, slots=True, eq=False)
class Deployment:
    provider: str
    model: str  # the upstream's own model name
    adapter: Adapter
    input_price_per_mtok: float
    output_price_per_mtok: float
    timeouts: Timeouts = field(default_factory=Timeouts)
    context_window_tokens: int | None = None
    max_concurrency: int | None = None
    self_hosted: bool = False
    data_collection: str = "allow"
    supported_parameters: frozenset[str] | None = None
    simulated: bool = False
    price_source: str = "config"
    # None: cached prompt tokens and reasoning tokens cost the input and output price.
    cached_input_price_per_mtok: float | None = None
    reasoning_price_per_mtok: float | None = None
    quantization: str = "unknown"
    zdr: bool = False  # zero data retention
    responses_api: bool = False  # /v1/responses requests go to its Responses API natively

    @property
    def id(self) -> str:
        return f"{self.provider}/{self.model}"

    @property
    def cached_price(self) -> float:
        cached = self.cached_input_price_per_mtok
        return self.input_price_per_mtok if cached is None else cached

    def cost_usd(
        self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, reasoning_tokens: int = 0
    ) -> float:
        """USD for these tokens, as the provider bills them; never negative (a negative cost would refund).

        `cached_tokens` are the part of the prompt read from the provider's prompt cache and
        `reasoning_tokens` the part of the completion spent reasoning (OpenAI counts both
        inside prompt and completion tokens); each is billed at its own price when it has one.
        """
        cached = min(max(cached_tokens, 0), max(prompt_tokens, 0))
        reasoning = min(max(reasoning_tokens, 0), max(completion_tokens, 0))
        reasoning_price = self.reasoning_price_per_mtok
        if reasoning_price is None:
            reasoning_price = self.output_price_per_mtok
        usd = (
            (prompt_tokens - cached) * self.input_price_per_mtok
            + cached * self.cached_price
            + (completion_tokens - reasoning) * self.output_price_per_mtok
            + reasoning * reasoning_price
        ) / 1e6
        return max(0.0, usd)

    def cost_of(self, usage: Usage) -> float:
        """USD for an answer's usage, with its cached and reasoning tokens."""
        return self.cost_usd(
            usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.reasoning_tokens
        )


@dataclass(frozen=True, slots=True)
class ModelGroup:
    """What clients ask for by name, and the deployments that can serve it."""

    name: str
    deployments: tuple[Deployment, ...]
