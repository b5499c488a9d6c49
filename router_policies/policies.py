"""Scoring policies: small classes behind one protocol, chosen by name in config.

A policy orders the available candidates of one model and sets each one's `score`
(shown to clients in the `gateway` metadata). Filtering, breakers, `order` pinning
and fallbacks are the router's business, so a policy is only "how to rank". Adding
one means writing a class here and naming it in `POLICIES`.

- `effective_price` (the default). Its objective, in one sentence a user can check:
  *among the healthy deployments that meet the request's latency and throughput
  targets, traffic goes to each in proportion to 1 / effective price², discounted
  only by its load and its recent error rate; deployments that miss a target, are
  at capacity or have an open breaker are used only as fallbacks, the nearest to the
  targets first.* Speed beyond the target buys nothing: a slower, cheaper deployment
  keeps its share while it meets the target. A latency target is judged at the load
  the next answer meets (the load-aware fit of `load_fit.py`). (The target split and
  the fallbacks' order are the router's, so they hold for every policy.)
- `balanced`: the same inverse-square weighting, also discounted mildly by latency
  and throughput against the best candidate (square root of the ratio), so faster
  deployments win share even when no target asks for speed.
- `inverse_price_squared`: OpenRouter's documented default, weights 1/list price² only
  (the mean of input and output price, as published; no cache or mix adjustment).
- `random`: uniform choice (LiteLLM's default `simple-shuffle`).
- `price`, `latency`, `throughput`: a strict order (the `sort` preference). Busy
  candidates go last; candidates with no stats yet go first for latency and
  throughput, so they get measured.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Protocol

from router_policies.candidates import PRICE_FLOOR_PER_MTOK, Candidate


class Policy(Protocol):
    name: str

    def rank(self, candidates: list[Candidate], rng: random.Random) -> list[Candidate]: ...


def weighted_order(candidates: list[Candidate], rng: random.Random) -> list[Candidate]:
    """A draw without replacement in proportion to score (Efraimidis-Spirakis keys).

    Zero-score candidates follow the others, cheapest first, so they remain fallbacks.
    """
    positive = [c for c in candidates if c.score > 0]
    keyed = sorted(positive, key=lambda c: math.log(1.0 - rng.random()) / c.score, reverse=True)
    rest = sorted((c for c in candidates if c.score <= 0), key=lambda c: c.price)
    return keyed + rest


class InversePriceSquared:
    name = "inverse_price_squared"

    def rank(self, candidates: list[Candidate], rng: random.Random) -> list[Candidate]:
        for c in candidates:
            d = c.deployment
            price = max((d.input_price_per_mtok + d.output_price_per_mtok) / 2, PRICE_FLOOR_PER_MTOK)
            c.score = 1.0 / (price * price)
        return weighted_order(candidates, rng)


class UniformRandom:
    name = "random"

    def rank(self, candidates: list[Candidate], rng: random.Random) -> list[Candidate]:
        for c in candidates:
            c.score = 1.0
        return weighted_order(candidates, rng)


def _ratio(mine: float | None, best: float | None) -> float:
    """`best / mine` for a lower-is-better figure, 1.0 when either is unknown."""
    if mine is None or best is None or mine <= 0:
        return 1.0
    return min(1.0, best / mine)


def _health_and_room(c: Candidate) -> float:
    """The discount every weighting shares: spare capacity times squared success rate."""
    return (1.0 - c.load) * (1.0 - c.stats.error_rate) ** 2


class EffectivePrice:
    """Inverse-square effective price, discounted by load and errors only; see the module docstring."""

    name = "effective_price"

    def rank(self, candidates: list[Candidate], rng: random.Random) -> list[Candidate]:
        for c in candidates:
            c.score = 0.0 if c.busy else _health_and_room(c) / (c.price * c.price)
        return weighted_order(candidates, rng)


class Balanced:
    name = "balanced"

    def rank(self, candidates: list[Candidate], rng: random.Random) -> list[Candidate]:
        ttfts = [c.stats.ttft_p50_ms for c in candidates if c.stats.ttft_p50_ms is not None]
        rates = [c.stats.tps_p50 for c in candidates if c.stats.tps_p50]
        best_ttft = min(ttfts) if ttfts else None
        best_rate = max(rates) if rates else None
        for c in candidates:
            if c.busy:
                c.score = 0.0
                continue
            speed = math.sqrt(_ratio(c.stats.ttft_p50_ms, best_ttft))
            rate = math.sqrt(_ratio(best_rate, c.stats.tps_p50)) if c.stats.tps_p50 else 1.0
            c.score = _health_and_room(c) * speed * rate / (c.price * c.price)
        return weighted_order(candidates, rng)


class Sorted:
    """A strict order by one figure; ties broken by price."""

    def __init__(self, key: str) -> None:
        self.name = key
        self._key: Callable[[Candidate], tuple[float, ...]] = getattr(self, f"_{key}")

    @staticmethod
    def _price(c: Candidate) -> tuple[float, ...]:
        return (c.price,)

    @staticmethod
    def _latency(c: Candidate) -> tuple[float, ...]:
        return (c.stats.ttft_p50_ms if c.stats.ttft_p50_ms is not None else -1.0, c.price)

    @staticmethod
    def _throughput(c: Candidate) -> tuple[float, ...]:
        return (-(c.stats.tps_p50 if c.stats.tps_p50 is not None else math.inf), c.price)

    def rank(self, candidates: list[Candidate], rng: random.Random) -> list[Candidate]:
        ordered = sorted(candidates, key=lambda c: (c.busy, *self._key(c)))
        for i, c in enumerate(ordered):
            c.score = float(len(ordered) - i)
        return ordered


POLICIES: dict[str, Callable[[], Policy]] = {
    "effective_price": EffectivePrice,
    "balanced": Balanced,
    "inverse_price_squared": InversePriceSquared,
    "random": UniformRandom,
    "price": lambda: Sorted("price"),
    "latency": lambda: Sorted("latency"),
    "throughput": lambda: Sorted("throughput"),
}
DEFAULT_POLICY = "effective_price"


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]()
    except KeyError:
        raise ValueError(f"unknown routing policy {name!r}; known: {sorted(POLICIES)}") from None
