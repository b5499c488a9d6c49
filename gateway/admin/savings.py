"""What routing saved: the ledger's actual cost against two counterfactuals, per time slot.

The ledger keeps each answered request's tokens, model and deployment. For every time
slot and model the tokens are summed, then priced at the model's deployments' current
prices (from the runtime config, `input/output_price_per_mtok`):

- *most expensive*: all of those tokens sent to the deployment of the model that would
  have charged the most for them;
- *cheapest up*: all of them sent to the cheapest deployment of the model that was up in
  that slot, meaning it answered at least one request of the model then (the ledger has
  no other record of health in the past).

Failed and refused requests cost nothing and are left out. A model or deployment the
config no longer has is priced at what it actually cost, so it neither adds nor hides
savings.

Response-cache hits are booked at cost 0 with what the stored answer had cost; they
are reported beside routing's savings (`cache_hits`, `cache_saved_usd`) rather than
mixed into them, since no deployment was chosen for them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from router_policies.deployment import Deployment, ModelGroup


@dataclass(slots=True)
class _Slot:
    actual: float = 0.0
    most_expensive: float = 0.0
    cheapest_up: float = 0.0
    cache_hits: int = 0
    cache_saved: float = 0.0

    def add(self, actual: float, most_expensive: float, cheapest_up: float) -> None:
        self.actual += actual
        self.most_expensive += most_expensive
        self.cheapest_up += cheapest_up

    def as_dict(self) -> dict[str, Any]:
        saved = self.most_expensive - self.actual
        over = self.actual - self.cheapest_up
        return {
            "actual_usd": round(self.actual, 10),
            "most_expensive_usd": round(self.most_expensive, 10),
            "cheapest_up_usd": round(self.cheapest_up, 10),
            "saved_vs_most_expensive_usd": round(saved, 10),
            "saved_vs_most_expensive_pct": _pct(saved, self.most_expensive),
            "extra_vs_cheapest_up_usd": round(over, 10),
            "extra_vs_cheapest_up_pct": _pct(over, self.cheapest_up),
            "cache_hits": self.cache_hits,
            "cache_saved_usd": round(self.cache_saved, 10),
        }


def _pct(part: float, whole: float) -> float | None:
    return round(100 * part / whole, 4) if whole > 0 else None


@dataclass(slots=True)
class _ModelSlot:
    input_tokens: int = 0
    output_tokens: int = 0
    actual: float = 0.0
    unpriced: float = 0.0  # cost of rows on deployments the config no longer has
    up: set[str] = field(default_factory=set)


def _cost(d: Deployment, tin: int, tout: int) -> float:
    return d.cost_usd(tin, tout)


def _price(group: ModelGroup | None, m: _ModelSlot) -> tuple[float, float]:
    """(most expensive, cheapest up) cost of this slot's tokens of one model, unpriced rows as they were."""
    known = list(group.deployments) if group else []
    if not m.up:
        return m.actual + m.unpriced, m.actual + m.unpriced
    dearest = max(_cost(d, m.input_tokens, m.output_tokens) for d in known)
    up = [d for d in known if d.id in m.up]
    cheapest = min(_cost(d, m.input_tokens, m.output_tokens) for d in up)
    return dearest + m.unpriced, cheapest + m.unpriced


def savings(
    rows: list[tuple[str, str, str | None, int, int, float]],
    models: Mapping[str, ModelGroup],
    cache_rows: Sequence[tuple[str, int, float]] = (),
) -> dict[str, Any]:
    """`rows` are (slot, model, deployment, input tokens, output tokens, cost) from the ledger;
    `cache_rows` (slot, hits, USD saved) from its cache hits."""
    per: dict[tuple[str, str], _ModelSlot] = defaultdict(_ModelSlot)
    for slot, model, deployment, tin, tout, cost in rows:
        m = per[(slot, model)]
        group = models.get(model)
        if group is not None and any(d.id == deployment for d in group.deployments):
            m.input_tokens += tin
            m.output_tokens += tout
            m.actual += cost
            m.up.add(deployment or "")
        else:
            m.unpriced += cost
    series: dict[str, _Slot] = {}
    total = _Slot()
    for (slot, model), m in per.items():
        dearest, cheapest = _price(models.get(model), m)
        actual = m.actual + m.unpriced
        series.setdefault(slot, _Slot()).add(actual, dearest, cheapest)
        total.add(actual, dearest, cheapest)
    for slot, hits, saved in cache_rows:
        for target in (series.setdefault(slot, _Slot()), total):
            target.cache_hits += hits
            target.cache_saved += saved
    return {
        "total": total.as_dict(),
        "data": [{"bucket": slot, **series[slot].as_dict()} for slot in sorted(series)],
    }
