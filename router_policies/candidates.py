"""Candidate deployments: the hard filters of a request's preferences, and live load.

Filters (`only`, `ignore`, `data_collection: deny`, `zdr`, `quantizations`,
`require_parameters`, `max_price`) drop deployments and say why, so that when nothing
is left the client is told which deployment failed which rule. `Candidate` then
carries what the policies score: the effective price, the rolling stats, the load
(in-flight against `max_concurrency`, a self-hosted server's queue and KV cache, the
upstream's remaining rate limit), whether the breaker lets a request through, and
which latency/throughput targets it misses (soft: the router makes it a fallback).

The effective price is what a million tokens really cost at this deployment: its
input price discounted by its observed cache-hit rate, blended with its output price
by its observed input/output mix (each from the rolling window's token sums; before
`MIX_MIN_SAMPLES` answers reported usage, a 1:1 mix and no cache hits).

Images are a capability, not a field: a request with image parts sends the
pseudo-parameter `vision`, and a deployment that declares its parameters without
it is never sent images (one that declares nothing is, unless `require_parameters`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from providers.responses_wire import RESPONSES_FIELD
from router_policies.deployment import Deployment
from router_policies.prefs import PERCENTILES, ProviderPrefs
from router_policies.stats import Summary
from router_policies.store import StateStore

# Body fields every deployment accepts; anything else counts for `require_parameters`.
CORE_FIELDS = frozenset(
    {
        "model",
        "models",
        "messages",
        "stream",
        "stream_options",
        "provider",
        "user",
        "metadata",
        "input",
        RESPONSES_FIELD,
    }
)
PRICE_FLOOR_PER_MTOK = 0.01  # free (self-hosted) deployments still get a finite weight
SERVER_LOAD_STALE_S = 30.0
KV_CACHE_BUSY = 0.95
LOW_RATE_LIMIT = 0.2  # below this fraction of the limit left, count the rest as load
MIX_MIN_SAMPLES = 5  # answers with usage before the observed mix and cache-hit rate count


class NoCandidates(Exception):
    """Nothing survives the hard filters: a client error (4xx) naming each exclusion."""

    def __init__(self, model: str, excluded: list[tuple[str, str]]) -> None:
        reasons = "; ".join(f"{d}: {why}" for d, why in excluded) or "no deployments"
        super().__init__(
            f"no deployment of model {model!r} fits the request's provider preferences ({reasons})"
        )
        self.model = model
        self.excluded = excluded


def names(d: Deployment) -> tuple[str, str]:
    return d.provider.lower(), d.id.lower()


def named_in(d: Deployment, listed: Iterable[str]) -> bool:
    provider, ident = names(d)
    return any(x in (provider, ident) for x in listed)


# The pseudo-parameter a request with image content parts sends; deployments declare it.
VISION = "vision"
_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})


def has_images(messages: object) -> bool:
    """True when any message carries an image content part (a URL or a `data:` URI)."""
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(
            isinstance(part, dict) and part.get("type") in _IMAGE_PARTS for part in content
        ):
            return True
    return False


def sent_parameters(body: dict[str, object]) -> frozenset[str]:
    """The body's non-core fields, plus `vision` when it carries images."""
    sent = frozenset(body) - CORE_FIELDS
    return sent | {VISION} if has_images(body.get("messages")) else sent


def exclusion(d: Deployment, prefs: ProviderPrefs, sent: frozenset[str]) -> str | None:
    """Why a hard filter drops this deployment, or None when it stays."""
    if prefs.only is not None and not named_in(d, prefs.only):
        return "not in provider.only"
    if prefs.ignore is not None and named_in(d, prefs.ignore):
        return "in provider.ignore"
    if prefs.allow_fallbacks is False and prefs.order is not None and not named_in(d, prefs.order):
        return "not in provider.order and allow_fallbacks is false"
    if prefs.data_collection == "deny" and not (d.self_hosted or d.data_collection == "deny"):
        return "may keep data (data_collection: deny asked)"
    if prefs.zdr and not d.zdr:
        return "not a zero-data-retention deployment (zdr asked)"
    if prefs.quantizations is not None and d.quantization not in prefs.quantizations:
        return f"quantization {d.quantization} not in provider.quantizations"
    declared = d.supported_parameters
    if VISION in sent and declared is not None and VISION not in declared:
        return "declares its parameters without vision (the request has images)"
    if prefs.require_parameters and sent:
        missing = sorted(sent - (d.supported_parameters or frozenset()))
        if missing:
            return f"does not declare support for {missing}"
    price = prefs.max_price
    if price is not None:
        if price.prompt is not None and d.input_price_per_mtok > price.prompt:
            return f"prompt price ${d.input_price_per_mtok:g}/M above max_price.prompt ${price.prompt:g}/M"
        if price.completion is not None and d.output_price_per_mtok > price.completion:
            return f"completion price ${d.output_price_per_mtok:g}/M above max_price.completion ${price.completion:g}/M"
    return None


def filter_deployments(
    deployments: Sequence[Deployment], prefs: ProviderPrefs, sent: frozenset[str]
) -> tuple[list[Deployment], list[tuple[str, str]]]:
    kept: list[Deployment] = []
    excluded: list[tuple[str, str]] = []
    for d in deployments:
        why = exclusion(d, prefs, sent)
        if why is None:
            kept.append(d)
        else:
            excluded.append((d.id, why))
    return kept, excluded


def expected_ttft_ms(stats: Summary, q: str, in_flight: int) -> float | None:
    """Time to first token pXX of the next answer: the load-aware fit's prediction at the
    current in-flight count when there is one, else the window's percentile."""
    fitted = stats.load_fit
    return fitted.ttft_ms(q, in_flight) if fitted is not None else stats.ttft_ms(q)


def target_misses(stats: Summary, prefs: ProviderPrefs, in_flight: int = 0) -> list[str]:
    """Each latency/throughput cutoff this deployment misses (unmeasured: none)."""
    return target_check(stats, prefs, in_flight)[0]


def target_check(stats: Summary, prefs: ProviderPrefs, in_flight: int = 0) -> tuple[list[str], float]:
    """(each cutoff missed, the worst shortfall): latency is judged at the load the next answer
    meets (`in_flight`) when the fit allows. The shortfall is how far the worst cutoff is
    missed as a ratio (1.5: half as slow again as the target); 0 when every cutoff holds,
    and it orders the fallbacks, the nearest to the targets first."""
    misses: list[str] = []
    worst = 0.0
    if prefs.preferred_max_latency is not None:
        for q, seconds in prefs.preferred_max_latency.items():
            ttft = expected_ttft_ms(stats, q, in_flight)
            if ttft is not None and ttft > seconds * 1000:
                worst = max(worst, ttft / (seconds * 1000))
                at = f" at {in_flight} in flight (predicted)" if stats.load_fit is not None else ""
                misses.append(
                    f"time to first token {q} {ttft:.0f} ms{at} above preferred_max_latency.{q} {seconds * 1000:g} ms"
                )
    if prefs.preferred_min_throughput is not None:
        for q, rate in prefs.preferred_min_throughput.items():
            tps = stats.tps(q)
            if tps is not None and tps < rate:
                worst = max(worst, rate / max(tps, 1e-9))
                misses.append(
                    f"throughput {q} {tps:.1f} tokens/s below preferred_min_throughput.{q} {rate:g}"
                )
    return misses, worst


def effective_price(d: Deployment, stats: Summary) -> tuple[float, float, float]:
    """(USD per million tokens as billed, cache-hit rate, input share) from the observed usage."""
    total = stats.prompt_tokens + stats.completion_tokens
    if stats.usage_count >= MIX_MIN_SAMPLES and total > 0:
        input_share = stats.prompt_tokens / total
        hit = stats.cached_tokens / stats.prompt_tokens if stats.prompt_tokens else 0.0
    else:
        input_share, hit = 0.5, 0.0
    prompt_price = (1.0 - hit) * d.input_price_per_mtok + hit * d.cached_price
    price = input_share * prompt_price + (1.0 - input_share) * d.output_price_per_mtok
    return max(price, PRICE_FLOOR_PER_MTOK), hit, input_share


def warm_price(c: Candidate) -> float:
    """The candidate's effective price if every prompt token were read from its cache: the
    most a sticky prompt prefix can save there."""
    d = c.deployment
    price = c.input_share * d.cached_price + (1.0 - c.input_share) * d.output_price_per_mtok
    return max(price, PRICE_FLOOR_PER_MTOK)


@dataclass(slots=True)
class Candidate:
    deployment: Deployment
    model: str  # the name the client used for the group this deployment serves
    price: float  # effective USD per million tokens (see `effective_price`)
    stats: Summary
    in_flight: int
    load: float  # 0 idle … 1 saturated
    busy: bool  # at capacity: only a fallback
    available: bool  # the breaker lets a request through
    breaker: str
    score: float = 0.0
    cache_hit_rate: float = 0.0
    input_share: float = 0.5
    misses: list[str] = field(default_factory=list)  # targets missed: a fallback
    shortfall: float = 0.0  # how far the worst target is missed (see `target_check`)
    reasons: list[str] = field(default_factory=list)  # why it sits where it does in the plan

    @property
    def preferred(self) -> bool:
        """Meets every target and has room: goes before every candidate that does not."""
        return not self.misses and not self.busy

    def as_dict(self) -> dict[str, object]:
        d = self.deployment
        return {
            "deployment": d.id,
            "provider": d.provider,
            "model": self.model,
            "score": round(self.score, 6),
            "preferred": self.preferred,
            "reasons": self.reasons,
            "price_per_mtok": {
                "prompt": d.input_price_per_mtok,
                "completion": d.output_price_per_mtok,
                "cached_prompt": d.cached_price,
            },
            "effective_price_per_mtok": round(self.price, 6),
            "cache_hit_rate": round(self.cache_hit_rate, 4),
            "input_share": round(self.input_share, 4),
            "ttft_ms": {q: self.stats.ttft_ms(q) for q in PERCENTILES},
            "tokens_per_s": {q: self.stats.tps(q) for q in PERCENTILES},
            "predicted_ttft_ms": (
                {q: round(fitted.ttft_ms(q, self.in_flight), 1) for q in PERCENTILES}
                if (fitted := self.stats.load_fit) is not None
                else None
            ),
            "ttft_p50_ms": self.stats.ttft_p50_ms,
            "ttft_p90_ms": self.stats.ttft_p90_ms,
            "tokens_per_s_p50": self.stats.tps_p50,
            "error_rate": round(self.stats.error_rate, 4),
            "samples": self.stats.count,
            "in_flight": self.in_flight,
            "max_concurrency": d.max_concurrency,
            "load": round(self.load, 4),
            "busy": self.busy,
            "breaker": self.breaker,
        }


def _load(d: Deployment, store: StateStore, in_flight: int, now: float) -> tuple[float, bool]:
    load = min(1.0, in_flight / d.max_concurrency) if d.max_concurrency else 0.0
    busy = d.max_concurrency is not None and in_flight >= d.max_concurrency
    server = store.load(d.provider)
    if server is not None and now - server.at < SERVER_LOAD_STALE_S:
        # vLLM only queues once its batch is full: any waiting request means "at capacity".
        busy = busy or server.waiting > 0 or server.kv_cache_usage >= KV_CACHE_BUSY
        load = max(load, server.kv_cache_usage * 0.5)
    limit = store.state(d.id).rate_limit
    fraction = limit.remaining_fraction(now) if limit is not None else None
    if fraction is not None:
        busy = busy or fraction <= 0.0
        if fraction < LOW_RATE_LIMIT:
            load = max(load, 1.0 - fraction / LOW_RATE_LIMIT)
    return load, busy


def candidate(
    d: Deployment, model: str, store: StateStore, now: float, prefs: ProviderPrefs | None = None
) -> Candidate:
    state = store.state(d.id)
    in_flight = state.total_in_flight
    load, busy = _load(d, store, in_flight, now)
    stats = state.window.summary()
    price, hit, input_share = effective_price(d, stats)
    misses, shortfall = (
        target_check(stats, prefs, in_flight) if prefs is not None and prefs.has_targets else ([], 0.0)
    )
    return Candidate(
        deployment=d,
        model=model,
        price=price,
        stats=stats,
        in_flight=in_flight,
        load=load,
        busy=busy,
        available=state.breaker.allows(now),
        breaker=state.breaker.state(now),
        cache_hit_rate=hit,
        input_share=input_share,
        misses=misses,
        shortfall=shortfall,
    )
