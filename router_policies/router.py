"""The router: from a request's models and preferences to an ordered plan, and back.

`Router.plan` filters each model's deployments by the request's hard preferences,
builds live candidates from the state store, ranks the available ones with the
model's policy (or the `sort` the request asked for), pins `order` at the front and
concatenates the models of a `models: [...]` fallback list (with `sort.partition:
"none"` the sort runs across all of them at once). Then the soft preferences: every
candidate that misses a latency/throughput target or is at capacity moves behind
every one that does not, keeping its order (the fallbacks: nearest to the targets
first, at capacity last), so a fallback model meeting the target goes before a
primary that misses it. Last, prompt-cache stickiness: the deployment
that last served this key's long prompt prefix goes first while it is preferred (no
missed target, room, breaker closed) and its price with the whole prompt cached is no
higher than the effective price of the policy's first choice (so stickiness never
locks a key onto a dear deployment it once failed over to), unless the request
pinned an `order` or asked for a strict `sort`. With hedging on, the second place (the
hedge) goes to the preferred deployment with the lowest predicted p90 time to first
token. Each candidate carries the reasons for its place.

Deployments whose breaker is open are left out, unless nothing else is left, in
which case they are tried soonest-to-reopen first rather than failing the request
outright.

The router is also the executor's observer: each attempt's start, failure, success
and finish goes to the state store, so breakers and rolling stats follow reality.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from providers.errors import ContextLengthExceeded, ProviderError, UpstreamBadRequest
from providers.types import RateLimitInfo, Usage
from router_policies.attempts import AttemptLog
from router_policies.candidates import (
    Candidate,
    NoCandidates,
    candidate,
    expected_ttft_ms,
    filter_deployments,
    named_in,
    sent_parameters,
    warm_price,
)
from router_policies.deployment import Deployment, ModelGroup
from router_policies.policies import DEFAULT_POLICY, Policy, get_policy
from router_policies.prefs import NO_PREFS, ProviderPrefs
from router_policies.runner import DEFAULT_RETRY, NO_HEDGE, HedgeSettings, RetrySettings
from router_policies.store import StateStore


@dataclass(frozen=True, slots=True)
class ModelRouting:
    """Per-model routing settings from config."""

    policy: str = DEFAULT_POLICY
    hedge: HedgeSettings = NO_HEDGE
    retry: RetrySettings = DEFAULT_RETRY
    defaults: ProviderPrefs = NO_PREFS


DEFAULT_ROUTING = ModelRouting()


@dataclass(slots=True)
class Plan:
    deployments: list[Deployment]
    model_of: dict[Deployment, str]
    policy: str
    prefs: ProviderPrefs
    hedge: HedgeSettings
    retry: RetrySettings
    candidates: list[Candidate] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)
    groups: list[ModelGroup] = field(default_factory=list)
    prefix_key: str | None = None  # prompt-cache stickiness (see stickiness.py)
    router: Router | None = None

    @property
    def observer(self) -> Any:
        """What the executor reports to: the router, or a wrapper that also remembers the prefix."""
        if self.prefix_key is None or self.router is None:
            return self.router
        return _StickyObserver(self.router, self.prefix_key)

    def metadata(self, log: AttemptLog) -> dict[str, Any]:
        """The `gateway` object: why this plan, and what each attempt did."""
        return {
            "policy": self.policy,
            "preferences": self.prefs.as_dict(),
            "hedge": self.hedge.enabled,
            "candidates": [c.as_dict() for c in self.candidates],
            "excluded": [{"deployment": d, "reason": why} for d, why in self.excluded],
            "plan": [d.id for d in self.deployments],
            "sticky_prefix": self.prefix_key is not None,
            "attempts": [a.as_dict() for a in log.attempts],
        }


def _counts_against(error: ProviderError) -> bool:
    """Errors that say something about the deployment's health (not the request's fault)."""
    return not isinstance(error, UpstreamBadRequest | ContextLengthExceeded)


class Router:
    def __init__(
        self, store: StateStore, routing: dict[str, ModelRouting] | None = None, seed: int | None = None
    ) -> None:
        self.store = store
        self.routing = routing or {}
        self._policies: dict[str, Policy] = {}
        self.rng = random.Random(seed)
        for settings in self.routing.values():
            self.policy(settings.policy)  # fail at start-up on an unknown name

    def policy(self, name: str) -> Policy:
        policy = self._policies.get(name)
        if policy is None:
            policy = self._policies[name] = get_policy(name)
        return policy

    def settings_for(self, model: str) -> ModelRouting:
        return self.routing.get(model, DEFAULT_ROUTING)

    def plan(
        self,
        groups: Sequence[ModelGroup],
        body: dict[str, Any],
        request: ProviderPrefs = NO_PREFS,
        key: ProviderPrefs | None = None,
        prefix_key: str | None = None,
    ) -> Plan:
        """The ordered plan over every model in the fallback list; NoCandidates if none fits."""
        first = self.settings_for(groups[0].name)
        prefs = first.defaults.merge(key).merge(request)
        plan = Plan([], {}, prefs.sort or first.policy, prefs, _hedge_for(first.hedge, prefs), first.retry)
        plan.groups = list(groups)
        plan.router, plan.prefix_key = self, prefix_key
        sent = sent_parameters(body)
        closed: list[Candidate] = []
        now = self.store.now()
        ranked: list[Candidate] = []
        for i, group in enumerate(groups):
            settings = self.settings_for(group.name)
            group_prefs = prefs if i == 0 else settings.defaults.merge(key).merge(request)
            kept, excluded = filter_deployments(group.deployments, group_prefs, sent)
            plan.excluded += excluded
            candidates = [candidate(d, group.name, self.store, now, group_prefs) for d in kept]
            ranked += self._rank(candidates, group_prefs, settings)
            closed += [c for c in candidates if not c.available]
        if prefs.sort is not None and prefs.partition == "none" and len(groups) > 1:
            ranked = self.policy(prefs.sort).rank(ranked, self.rng)
        ranked = _prefer(ranked, prefs)
        if prefix_key is not None and prefs.order is None and prefs.sort is None:
            ranked = self._stick(ranked, prefix_key)
        if plan.hedge.enabled and prefs.order is None and prefs.sort is None:
            ranked = _fastest_second(ranked)
        plan.candidates = ranked
        for c in ranked:
            plan.deployments.append(c.deployment)
            plan.model_of[c.deployment] = c.model
        if not plan.candidates and not closed:
            raise NoCandidates(
                groups[0].name if len(groups) == 1 else str([g.name for g in groups]), plan.excluded
            )
        if not plan.deployments:  # every breaker is open: try the soonest to reopen
            closed.sort(key=lambda c: self.store.state(c.deployment.id).breaker.open_until)
            for c in closed:
                plan.deployments.append(c.deployment)
                plan.model_of[c.deployment] = c.model
            plan.candidates += closed
        else:
            for c in closed:
                breaker = self.store.state(c.deployment.id).breaker
                plan.excluded.append((c.deployment.id, f"breaker {c.breaker}: {breaker.reason}"))
        return plan

    def _stick(self, ranked: list[Candidate], prefix_key: str) -> list[Candidate]:
        """The deployment that served this prompt prefix last goes first while it is preferred
        and, with its prompt cache warm, no dearer than the policy's first choice."""
        ident = self.store.sticky(prefix_key)
        if ident is None or not ranked or ranked[0].deployment.id == ident:
            return ranked
        for i, c in enumerate(ranked):
            if c.deployment.id != ident or c.model != ranked[0].model:
                continue
            if not c.preferred:
                c.reasons.append("served this prompt prefix last, but not preferred now: no stickiness")
            elif warm_price(c) > ranked[0].price:
                c.reasons.append(
                    f"served this prompt prefix last, but even cached (${warm_price(c):.4g}/M) dearer than "
                    f"{ranked[0].deployment.id} (${ranked[0].price:.4g}/M): no stickiness"
                )
            else:
                c.reasons.append("first: served this key's prompt prefix last (its prompt cache is warm)")
                return [c, *ranked[:i], *ranked[i + 1 :]]
            return ranked
        return ranked

    def _rank(
        self, candidates: list[Candidate], prefs: ProviderPrefs, settings: ModelRouting
    ) -> list[Candidate]:
        available = [c for c in candidates if c.available]
        ranked = self.policy(prefs.sort or settings.policy).rank(available, self.rng)
        if prefs.order:
            pinned: list[Candidate] = []
            for name in prefs.order:
                pinned += [
                    c for c in ranked if named_in(c.deployment, (name,)) and all(c is not p for p in pinned)
                ]
            ranked = pinned + [c for c in ranked if all(c is not p for p in pinned)]
        elif prefs.allow_fallbacks is False:
            ranked = ranked[:1]
        return ranked

    # -- the executor's observer ---------------------------------------------------------

    def started(self, d: Deployment) -> None:
        self.store.started(d.id)

    def succeeded(self, d: Deployment) -> None:
        self.store.succeeded(d.id)

    def failed(self, d: Deployment, error: ProviderError) -> None:
        reason = error.error_type if error.status is None else f"{error.error_type} {error.status}"
        retry_after = getattr(error, "retry_after_s", None)
        self.store.failed(d.id, retry_after, reason, _counts_against(error))

    def cancelled(self, d: Deployment) -> None:
        self.store.cancelled(d.id)

    def finished(
        self,
        d: Deployment,
        ttft_ms: float,
        tokens_per_s: float | None,
        rate_limit: RateLimitInfo | None,
        usage: Usage | None = None,
        in_flight: int | None = None,
    ) -> None:
        self.store.finished(d.id, ttft_ms, tokens_per_s, rate_limit, usage, in_flight)

    def in_flight(self, d: Deployment) -> int:
        """Answers in flight on this deployment now, every replica's (the load an attempt meets)."""
        return self.store.state(d.id).total_in_flight

    def available(self, d: Deployment) -> bool:
        return self.store.state(d.id).breaker.allows(self.store.now())

    def ttft_p90_ms(self, d: Deployment) -> float | None:
        """The p90 time to first token of an attempt just started on `d` (the hedge's delay):
        predicted at the load it met when the load-aware fit allows, else the window's."""
        state = self.store.state(d.id)
        return expected_ttft_ms(state.window.summary(), "p90", max(0, state.total_in_flight - 1))


def _fastest_second(ranked: list[Candidate]) -> list[Candidate]:
    """With hedging, the second place (the hedge, and the first failover) goes to the preferred
    deployment of the same model with the lowest predicted p90 time to first token: a hedge is
    there to answer sooner than a late first choice, and the policy's next draw is as likely
    to be another cheap, slow one. The first choice stays the policy's."""
    best: tuple[float, int] | None = None
    for i, c in enumerate(ranked[1:], start=1):
        if not c.preferred or c.model != ranked[0].model:
            continue
        p90 = expected_ttft_ms(c.stats, "p90", c.in_flight)
        if p90 is not None and (best is None or p90 < best[0]):
            best = (p90, i)
    if best is None or best[1] == 1:
        return ranked
    second = ranked[best[1]]
    second.reasons.append(
        "second: the hedge, the lowest predicted p90 time to first token among the preferred"
    )
    return [ranked[0], second, *ranked[1 : best[1]], *ranked[best[1] + 1 :]]


def _hedge_for(hedge: HedgeSettings, prefs: ProviderPrefs) -> HedgeSettings:
    """The model's hedge settings with the request's tightest time-to-first-token target."""
    latency = prefs.preferred_max_latency
    if not hedge.enabled or latency is None or not latency.items():
        return hedge
    return replace(hedge, target_ms=min(seconds for _, seconds in latency.items()) * 1000)


def _prefer(ranked: list[Candidate], prefs: ProviderPrefs) -> list[Candidate]:
    """Candidates meeting every target with room first, in the policy's order; then those that
    miss a target, nearest to the targets first (the policy's order among equals), so when
    nothing meets them the request goes where it is likeliest to; those at capacity last.

    A deployment pinned by `order` keeps its place: the client named it.
    """
    pinned = prefs.order or ()
    front: list[Candidate] = []
    back: list[Candidate] = []
    for c in ranked:
        if c.preferred or (pinned and named_in(c.deployment, pinned)):
            front.append(c)
            c.reasons.append("meets the targets" if prefs.has_targets else "has room")
        else:
            back.append(c)
            c.reasons += [f"fallback: {why}" for why in c.misses]
            if c.busy:
                c.reasons.append("fallback: at capacity")
    back.sort(key=lambda c: (c.busy, c.shortfall))
    return front + back


class _StickyObserver:
    """The router as the executor's observer, remembering who answered this prompt prefix."""

    __slots__ = ("_key", "_router")

    def __init__(self, router: Router, key: str) -> None:
        self._router = router
        self._key = key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._router, name)

    def succeeded(self, d: Deployment) -> None:
        self._router.succeeded(d)
        self._router.store.remember_prefix(self._key, d.id)
