"""Glue between the service and `router_policies`: config in, plans out.

Built once in the lifespan (`build_routing`): the state store (Redis when `REDIS_URL`
is set, in-process otherwise), the router with each model's routing settings, and
the background scraper of vLLM `/metrics`; all are stopped through the runtime's
closers. Per request, `Routing.plan` reads the model (with a `:nitro`/`:floor`
suffix), the `models` fallback list and the `provider` preferences from the body,
layers model and key defaults under them, and turns routing's own errors into
client errors that say what to change.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.routing_config import ModelRoutingConfig, PrefsConfig, RoutingConfig
from gateway.settings import Settings
from gateway.telemetry.tracing import annotate_plan, child_span
from providers.transport import TransportPool
from router_policies.breaker import BreakerSettings
from router_policies.candidates import NoCandidates
from router_policies.deployment import ModelGroup
from router_policies.prefs import NO_PREFS, PrefsError, ProviderPrefs, parse_prefs, split_suffix
from router_policies.redis_store import RedisStore
from router_policies.router import ModelRouting, Plan, Router
from router_policies.runner import HedgeSettings, RetrySettings
from router_policies.stickiness import prefix_key
from router_policies.store import LocalStore
from router_policies.vllm_metrics import MetricsScraper, MetricsTarget

log = logging.getLogger("gateway")

METADATA_HEADER = "x-gateway-metadata"


def _prefs(config: PrefsConfig | None, where: str) -> ProviderPrefs:
    return parse_prefs(config.model_dump(exclude_none=True), where) if config is not None else NO_PREFS


def model_routing(config: ModelRoutingConfig, where: str) -> ModelRouting:
    hedge = config.hedge
    return ModelRouting(
        policy=config.policy,
        hedge=HedgeSettings(hedge.enabled, hedge.default_delay_ms, hedge.min_delay_ms),
        retry=RetrySettings(rounds=1 + config.retries, max_wait_s=config.retry_max_wait_ms / 1000),
        defaults=_prefs(config.defaults, where),
    )


def wants_metadata(headers: Mapping[str, str]) -> bool:
    return headers.get(METADATA_HEADER, "").strip().lower() == "enabled"


def fill_model(body: dict[str, Any]) -> None:
    """A request may give only `models: [...]`; its first entry is then the model."""
    models = body.get("models")
    if "model" not in body and isinstance(models, list) and models and isinstance(models[0], str):
        body["model"] = models[0]


def _model_names(body: dict[str, Any]) -> list[str]:
    names = [body["model"]] if isinstance(body.get("model"), str) else []
    extra = body.get("models")
    if extra is not None:
        if not isinstance(extra, list) or not all(isinstance(m, str) and m for m in extra):
            raise GatewayError(400, "models must be a list of model names", param="models")
        names += [m for m in extra if m not in names]
    if not names:
        raise GatewayError(400, "the request must name a model (model or models)", param="model")
    return names


class Routing:
    def __init__(
        self,
        router: Router,
        scraper: MetricsScraper,
        key_defaults: dict[str, ProviderPrefs],
        stickiness: bool = True,
    ) -> None:
        self.router = router
        self.store = router.store
        self.scraper = scraper
        self.key_defaults = key_defaults
        self.stickiness = stickiness

    def _groups(
        self, models: Mapping[str, ModelGroup], names: list[str]
    ) -> tuple[list[ModelGroup], ProviderPrefs]:
        groups: list[ModelGroup] = []
        suffix_prefs = NO_PREFS
        for i, name in enumerate(names):
            base, suffix = split_suffix(name)
            group = models.get(name) or (models.get(base) if suffix else None)
            if group is None:
                raise GatewayError(
                    404,
                    f"the model {name!r} does not exist on this gateway; GET /v1/models lists the available ones",
                    code="model_not_found",
                    param="model" if i == 0 else "models",
                )
            if i == 0 and suffix is not None and group.name != name:
                suffix_prefs = suffix
            if group not in groups:
                groups.append(group)
        return groups, suffix_prefs

    def plan(self, models: Mapping[str, ModelGroup], body: dict[str, Any], key_name: str | None) -> Plan:
        groups, suffix_prefs = self._groups(models, _model_names(body))
        try:
            request = suffix_prefs.merge(parse_prefs(body.get("provider")))
        except PrefsError as error:
            raise GatewayError(400, error.message, param=error.param) from None
        key = self.key_defaults.get(key_name) if key_name is not None else None
        sticky = prefix_key(key_name, body.get("messages")) if self.stickiness else None
        try:
            with child_span("gateway.route", **{"gateway.model": groups[0].name}) as span:
                plan = self.router.plan(groups, body, request, key, sticky)
                annotate_plan(span, plan)
                return plan
        except NoCandidates as error:
            raise GatewayError(
                400,
                str(error),
                code="no_matching_deployment",
                param="provider",
                metadata={"excluded": [{"deployment": d, "reason": why} for d, why in error.excluded]},
            ) from None

    async def aclose(self) -> None:
        await self.scraper.aclose()
        await self.store.aclose()


def _metrics_targets(
    config: GatewayConfig, base_urls: Mapping[str, str], pool: TransportPool
) -> list[MetricsTarget]:
    from providers.presets import PRESETS

    targets = []
    for p in config.providers:
        is_vllm = p.simulate == "vllm" or (p.preset or p.name) == "vllm"
        if not (p.metrics_url or is_vllm):
            continue
        url = p.metrics_url
        if url is None:
            base = (base_urls.get(p.name) or p.base_url or PRESETS["vllm"].base_url).rstrip("/")
            url = (base[:-3] if base.endswith("/v1") else base) + "/metrics"
        targets.append(MetricsTarget(p.name, url, pool.for_url(url), dict(p.headers)))
    return targets


def _store(settings: Settings, routing: RoutingConfig) -> LocalStore:
    breaker = routing.breaker
    common: dict[str, Any] = {
        "breaker_settings": BreakerSettings(
            breaker.failure_threshold, breaker.cooldown_ms / 1000, breaker.max_cooldown_ms / 1000
        ),
        "window_s": routing.window_s,
    }
    if settings.redis_url:
        return RedisStore(
            settings.redis_url,
            prefix=routing.state_prefix,
            sync_interval_s=routing.state_sync_interval_ms / 1000,
            op_timeout_s=routing.state_timeout_ms / 1000,
            **common,
        )
    return LocalStore(**common)


async def build_routing(
    settings: Settings,
    config: GatewayConfig,
    models: Mapping[str, ModelGroup],
    pool: TransportPool,
    base_urls: Mapping[str, str],
) -> Routing:
    store = _store(settings, config.routing)
    store.track(d.id for group in models.values() for d in group.deployments)
    await store.start()
    per_model = {
        m.name: model_routing(m.routing, f"models[{i}].routing") for i, m in enumerate(config.models)
    }
    router = Router(store, per_model, seed=config.routing.seed)
    scraper = MetricsScraper(
        _metrics_targets(config, base_urls, pool), store, config.routing.metrics_interval_ms / 1000
    )
    scraper.start()
    key_defaults = {
        name: _prefs(prefs, f"routing.key_defaults.{name}")
        for name, prefs in config.routing.key_defaults.items()
    }
    log.info("routing state: %s", store.describe())
    return Routing(router, scraper, key_defaults, config.routing.prompt_cache_stickiness)
