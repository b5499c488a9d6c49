"""Builds the live objects a running gateway needs from its config, once, at start-up.

Resolves each provider against its preset, opens one pooled transport per upstream
origin, starts simulated upstreams for demo providers, fills in prices from litellm's
cost map where the config gives none, and indexes models by name. Everything here is
created in the app's lifespan and closed with it; nothing is built per request.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from gateway.config import ConfigError, DeploymentConfig, GatewayConfig, ProviderConfig, TimeoutFields
from gateway.lifecycle import Lifecycle
from gateway.records import RecentRecords, RecordSink, RequestRecord
from gateway.responses_store import MemoryResponseStore, ResponseStore
from gateway.settings import Settings
from providers.catalog import PriceCatalog
from providers.clock import request_clock
from providers.openai_compat import OpenAICompatAdapter
from providers.presets import PRESETS, Preset
from providers.quirks import Quirks
from providers.redact import Redactor
from providers.transport import TransportPool
from providers.types import Adapter, Timeouts
from router_policies.deployment import Deployment, ModelGroup

log = logging.getLogger("gateway")

_GENERIC = Preset(base_url="", api_key_env=None, price_prefix="openai")


@dataclass(slots=True)
class ResolvedProvider:
    name: str
    adapter: Adapter
    preset: Preset
    config: ProviderConfig
    self_hosted: bool
    data_collection: str
    simulated: bool
    responses_api: bool = False


@dataclass
class Runtime:
    settings: Settings
    config: GatewayConfig
    models: dict[str, ModelGroup]
    providers: dict[str, ResolvedProvider]
    pool: TransportPool
    recent: RecentRecords = field(default_factory=RecentRecords)
    sinks: list[RecordSink] = field(default_factory=list)
    closers: list[Any] = field(default_factory=list)
    models_json: bytes = b""
    accounts: Any = None  # gateway.accounts.Accounts: keys, limits, the ledger
    resumable_models: frozenset[str] = frozenset()
    routing: Any = None  # gateway.routing.Routing: the router, its state store, the vLLM scraper
    telemetry: Any = None  # gateway.telemetry.Telemetry: metrics registry, health probe, prompt log
    rag: Any = None  # gateway.retrieval.RagService: the Qdrant store and embedders
    responses: ResponseStore = field(default_factory=lambda: MemoryResponseStore(0))  # see build_runtime
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    readiness: Any = None  # gateway.readiness.Readiness: what `/ready` probes
    cache: Any = None  # gateway.cache.service.CacheService: exact and semantic response cache

    def finish(self, record: RequestRecord) -> None:
        """Hand a finished request to every sink; never raises into the response path."""
        if record.overhead_ms is None and (clock := request_clock.get()) is not None:
            record.overhead_ms = clock.overhead_ms()
        self.recent.record(record)
        for sink in self.sinks:
            try:
                sink.record(record)
            except Exception:
                log.exception("record sink %s failed", type(sink).__name__)

    async def aclose(self) -> None:
        await self.pool.aclose()
        for closer in reversed(self.closers):
            try:
                await closer()
            except Exception:
                log.exception("error while shutting down")


def _timeouts(*layers: TimeoutFields) -> Timeouts:
    timeouts = Timeouts()
    for layer in layers:
        for name in ("connect_timeout_ms", "first_byte_timeout_ms", "idle_timeout_ms", "total_timeout_ms"):
            value = getattr(layer, name)
            if value is not None:
                setattr(timeouts, name, value)
    return timeouts


def _api_key(provider: ProviderConfig, preset: Preset) -> str | None:
    env_name = provider.api_key_env or preset.api_key_env
    if not env_name:
        return None
    value = os.environ.get(env_name)
    if not value and not provider.simulate and not (provider.self_hosted or preset.self_hosted):
        log.warning(
            "provider %s: environment variable %s is not set; its calls will fail", provider.name, env_name
        )
    return value or None


_CREDENTIAL_WORDS = ("auth", "key", "token", "secret")


def _preset(provider: ProviderConfig) -> Preset:
    return PRESETS.get(provider.preset or provider.name, _GENERIC)


def configured_secrets(settings: Settings, config: GatewayConfig) -> list[str]:
    """Every credential the process holds: the admin key, each provider's key and credential headers."""
    found = [settings.admin_key.get_secret_value()] if settings.admin_key else []
    for provider in config.providers:
        env_name = provider.api_key_env or _preset(provider).api_key_env
        found += [os.environ.get(env_name, "")] if env_name else []
        found += [v for k, v in provider.headers.items() if any(w in k.lower() for w in _CREDENTIAL_WORDS)]
    return [s for s in found if s]


def build_provider(
    provider: ProviderConfig, pool: TransportPool, base_url: str | None, redact: Redactor | None = None
) -> ResolvedProvider:
    """`redact` scrubs upstream text of every configured secret; without it, of this provider's own."""
    preset = _preset(provider)
    kind = provider.kind or preset.kind
    url = base_url or provider.base_url or preset.base_url
    quirks = Quirks(tuple(provider.quirks) if provider.quirks is not None else preset.quirks)
    adapter: Adapter
    if kind == "litellm":
        from providers.litellm_adapter import LiteLLMAdapter

        adapter = LiteLLMAdapter(
            provider.name,
            provider.litellm_provider or preset.price_prefix,
            api_key=_api_key(provider, preset),
            api_base=provider.base_url,
            redact=redact,
        )
    else:
        adapter = OpenAICompatAdapter(
            provider.name,
            url,
            pool.for_url(url),
            api_key=_api_key(provider, preset),
            quirks=quirks,
            extra_headers=provider.headers,
            redact=redact,
        )
    self_hosted = provider.self_hosted if provider.self_hosted is not None else preset.self_hosted
    data_collection = provider.data_collection or ("deny" if self_hosted else "allow")
    responses_api = provider.responses_api if provider.responses_api is not None else preset.responses_api
    return ResolvedProvider(
        provider.name,
        adapter,
        preset,
        provider,
        self_hosted,
        data_collection,
        provider.simulate is not None,
        responses_api and kind != "litellm",
    )


def _prices(
    where: str, d: DeploymentConfig, provider: ResolvedProvider, catalog: PriceCatalog | None
) -> tuple[float, float, int | None, str]:
    context = d.context_window_tokens
    if d.input_price_per_mtok is not None and d.output_price_per_mtok is not None:
        return d.input_price_per_mtok, d.output_price_per_mtok, context, "config"
    prefix = provider.config.litellm_provider or provider.preset.price_prefix
    entry = catalog.lookup(prefix, d.model) if catalog else None
    input_price = d.input_price_per_mtok
    output_price = d.output_price_per_mtok
    if entry is not None:
        input_price = entry.input_price_per_mtok if input_price is None else input_price
        output_price = entry.output_price_per_mtok if output_price is None else output_price
    if input_price is None or output_price is None:
        if provider.self_hosted:
            return input_price or 0.0, output_price or 0.0, context, "self-hosted"
        raise ConfigError(
            [
                f"{where}: no price for {provider.name}/{d.model} in the config or in litellm's cost map; "
                "set input_price_per_mtok and output_price_per_mtok"
            ]
        )
    return (
        float(input_price),
        float(output_price),
        context or (entry.max_input_tokens if entry else None),
        "litellm",
    )


def _token_class_prices(
    d: DeploymentConfig, provider: ResolvedProvider, catalog: PriceCatalog | None
) -> tuple[float | None, float | None]:
    """Cached-input and reasoning prices: the config's, else litellm's when its map is loaded."""
    cached, reasoning = d.cached_input_price_per_mtok, d.reasoning_price_per_mtok
    if (cached is None or reasoning is None) and catalog is not None:
        entry = catalog.lookup(provider.config.litellm_provider or provider.preset.price_prefix, d.model)
        if entry is not None:
            cached = entry.cached_input_price_per_mtok if cached is None else cached
            reasoning = entry.reasoning_price_per_mtok if reasoning is None else reasoning
    return cached, reasoning


def build_models(
    config: GatewayConfig, providers: dict[str, ResolvedProvider], catalog: PriceCatalog | None
) -> dict[str, ModelGroup]:
    models: dict[str, ModelGroup] = {}
    for m, model in enumerate(config.models):
        deployments = []
        for i, d in enumerate(model.deployments):
            provider = providers[d.provider]
            input_price, output_price, context, source = _prices(
                f"models[{m}].deployments[{i}]", d, provider, catalog
            )
            cached_price, reasoning_price = _token_class_prices(d, provider, catalog)
            zdr = d.zdr if d.zdr is not None else provider.config.zdr
            responses_api = d.responses_api if d.responses_api is not None else provider.responses_api
            deployments.append(
                Deployment(
                    provider=provider.name,
                    model=d.model,
                    adapter=provider.adapter,
                    input_price_per_mtok=input_price,
                    output_price_per_mtok=output_price,
                    timeouts=_timeouts(provider.config, d),
                    context_window_tokens=context,
                    max_concurrency=d.max_concurrency,
                    self_hosted=provider.self_hosted,
                    data_collection=provider.data_collection,
                    supported_parameters=frozenset(d.supported_parameters)
                    if d.supported_parameters
                    else None,
                    simulated=provider.simulated,
                    price_source=source,
                    cached_input_price_per_mtok=cached_price,
                    reasoning_price_per_mtok=reasoning_price,
                    quantization=d.quantization,
                    zdr=provider.self_hosted if zdr is None else zdr,
                    responses_api=responses_api,
                )
            )
        models[model.name] = ModelGroup(model.name, tuple(deployments))
    return models


def _needs_catalog(config: GatewayConfig) -> bool:
    return any(
        d.input_price_per_mtok is None or d.output_price_per_mtok is None
        for model in config.models
        for d in model.deployments
    )


def _response_store(settings: Settings, config: GatewayConfig) -> ResponseStore:
    """Shared in Redis when there is one (any replica continues a conversation), else in this process."""
    if settings.redis_url:
        from gateway.responses_redis import RedisResponseStore

        return RedisResponseStore(
            settings.redis_url, settings.responses_retention_s, config.routing.state_prefix
        )
    return MemoryResponseStore(settings.responses_retention_s, settings.responses_capacity)


async def build_runtime(settings: Settings, config: GatewayConfig) -> Runtime:
    pool = TransportPool(settings.http_client)
    closers: list[Any] = []
    base_urls: dict[str, str] = {}
    simulated = [p for p in config.providers if p.simulate]
    if simulated:
        from gateway.demo.simulated import start_simulated_upstreams

        base_urls, stop = await start_simulated_upstreams(simulated)
        closers.append(stop)
    redact = Redactor(configured_secrets(settings, config))  # compiled once, shared by every adapter
    providers = {p.name: build_provider(p, pool, base_urls.get(p.name), redact) for p in config.providers}
    catalog = PriceCatalog.load() if _needs_catalog(config) else None
    models = build_models(config, providers, catalog)
    runtime = Runtime(settings, config, models, providers, pool, closers=closers)
    runtime.responses = _response_store(settings, config)
    closers.append(runtime.responses.aclose)
    runtime.lifecycle = Lifecycle(settings.shutdown_drain_s, settings.shutdown_timeout_s)
    from gateway.accounts import open_accounts

    runtime.accounts = await open_accounts(runtime)
    from gateway.routes.models import models_payload

    runtime.models_json = models_payload(runtime)
    runtime.resumable_models = frozenset(m.name for m in config.models if m.resume_streams)
    from gateway.routing import build_routing

    runtime.routing = await build_routing(settings, config, models, pool, base_urls)
    closers.append(runtime.routing.aclose)
    from gateway.telemetry.wiring import open_telemetry

    runtime.telemetry = open_telemetry(runtime)
    from gateway.retrieval import RagService

    runtime.rag = RagService(settings, config, runtime)
    closers.append(runtime.rag.aclose)
    await runtime.rag.start()
    from gateway.cache.service import open_cache

    runtime.cache = open_cache(runtime)
    from gateway.readiness import Readiness

    runtime.readiness = Readiness.for_runtime(runtime)
    return runtime
