"""A deployment: one provider serving one model under one upstream name, with its prices.

Built by the gateway from its config; the router only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from providers.types import Adapter, Timeouts


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

    @property
    def id(self) -> str:
        return f"{self.provider}/{self.model}"

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for these tokens; never negative, whatever the counts (a negative cost would refund)."""
        return max(
            0.0,
            (prompt_tokens * self.input_price_per_mtok + completion_tokens * self.output_price_per_mtok)
            / 1e6,
        )


@dataclass(frozen=True, slots=True)
class ModelGroup:
    """What clients ask for by name, and the deployments that can serve it."""

    name: str
    deployments: tuple[Deployment, ...]
