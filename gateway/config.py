"""The YAML configuration: providers, models and their deployments.

Validated with pydantic models that forbid unknown fields; every error names the bad
field and the line it is on (`gateway.yaml:12: models[0].deployments[1].provider: …`),
because a config is edited by hand and "validation error" alone helps nobody.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.cache.config import CacheConfig, ModelCacheConfig
from gateway.retrieval_config import RagConfig, RagRequest
from gateway.routing_config import ModelRoutingConfig, RoutingConfig
from gateway.telemetry.prompt_config import PromptLogConfig
from providers.presets import PRESETS
from providers.quirks import KNOWN_QUIRKS

Path_ = tuple[str | int, ...]


class ConfigError(Exception):
    """Raised with one line per problem, each naming the field and its line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TimeoutFields(_Strict):
    connect_timeout_ms: float | None = Field(None, gt=0)
    first_byte_timeout_ms: float | None = Field(None, gt=0)
    idle_timeout_ms: float | None = Field(None, gt=0)
    total_timeout_ms: float | None = Field(None, gt=0)


class ProviderConfig(TimeoutFields):
    name: str = Field(min_length=1)
    preset: str | None = None
    kind: Literal["openai", "litellm"] | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    self_hosted: bool | None = None
    data_collection: Literal["allow", "deny"] | None = None
    # Zero data retention; self-hosted providers count as such unless this says otherwise.
    zdr: bool | None = None
    # Has the Responses API (`POST /responses`): the gateway's /v1/responses requests are sent there
    # natively instead of translated to Chat Completions. Default: the preset's (true for openai).
    responses_api: bool | None = None
    quirks: list[str] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    litellm_provider: str | None = None
    simulate: Literal["openai", "groq", "together", "perplexity", "vllm"] | None = None
    max_connections: int = Field(1000, gt=0)
    # Prometheus endpoint for load (vLLM); default for vLLM providers: <base_url without /v1>/metrics.
    metrics_url: str | None = None

    @field_validator("quirks")
    @classmethod
    def _known_quirks(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or ()) - KNOWN_QUIRKS)
        if unknown:
            raise ValueError(f"unknown quirks {unknown}; known: {sorted(KNOWN_QUIRKS)}")
        return value


class DeploymentConfig(TimeoutFields):
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    input_price_per_mtok: float | None = Field(None, ge=0)
    output_price_per_mtok: float | None = Field(None, ge=0)
    context_window_tokens: int | None = Field(None, gt=0)
    max_concurrency: int | None = Field(None, gt=0)
    supported_parameters: list[str] | None = None
    # USD per million prompt tokens served from the provider's prompt cache (default: litellm's
    # cache_read_input_token_cost, else the input price) and per million reasoning tokens.
    cached_input_price_per_mtok: float | None = Field(None, ge=0)
    reasoning_price_per_mtok: float | None = Field(None, ge=0)
    quantization: Literal["int4", "int8", "fp4", "fp6", "fp8", "fp16", "bf16", "fp32", "unknown"] = "unknown"
    zdr: bool | None = None  # overrides the provider's
    responses_api: bool | None = None  # overrides the provider's


class ModelConfig(_Strict):
    name: str = Field(min_length=1)
    deployments: list[DeploymentConfig] = Field(min_length=1)
    # Continue a stream that breaks after content on another deployment, sending the partial
    # answer as an assistant prefix. Off by default: it only suits models that honour a prefix.
    resume_streams: bool = False
    routing: ModelRoutingConfig = Field(default_factory=ModelRoutingConfig)
    # Ground every request to this model in a collection (a request's own `rag` overrides fields).
    rag: RagRequest | None = None
    # Cache this model's answers by default (see gateway.cache.config).
    cache: ModelCacheConfig | None = None


class GatewayConfig(_Strict):
    providers: list[ProviderConfig] = Field(default_factory=list)
    models: list[ModelConfig] = Field(default_factory=list)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    prompt_log: PromptLogConfig = Field(default_factory=PromptLogConfig)
    rag: RagConfig = Field(default_factory=RagConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)


# --------------------------------------------------------------------------- loading


def _line_index(node: yaml.Node, path: Path_ = (), index: dict[Path_, int] | None = None) -> dict[Path_, int]:
    """Map every path in the YAML document to its 1-based line."""
    index = {} if index is None else index
    index[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            index[(*path, key)] = key_node.start_mark.line + 1
            _line_index(value_node, (*path, key), index)
            index[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), index)
    return index


def _line_for(loc: Path_, lines: dict[Path_, int]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _dotted(loc: Path_) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


_NATIVE_ONLY = "only OpenAI-compatible providers can serve the Responses API natively"


def _kind(provider: ProviderConfig) -> str:
    preset = PRESETS.get(provider.preset or provider.name)
    return provider.kind or (preset.kind if preset is not None else "openai")


def _cross_check(config: GatewayConfig) -> list[tuple[Path_, str]]:
    problems: list[tuple[Path_, str]] = []
    providers: dict[str, ProviderConfig] = {}
    for i, provider in enumerate(config.providers):
        if provider.name in providers:
            problems.append((("providers", i, "name"), f"duplicate provider name {provider.name!r}"))
        providers[provider.name] = provider
        preset = provider.preset or provider.name
        if provider.preset and provider.preset not in PRESETS:
            problems.append((("providers", i, "preset"), f"unknown preset; known: {sorted(PRESETS)}"))
        elif preset not in PRESETS and not provider.base_url and not provider.simulate:
            problems.append(
                (
                    ("providers", i),
                    f"{provider.name!r} is not a known preset ({', '.join(sorted(PRESETS))}); "
                    "give it a base_url",
                )
            )
        if provider.responses_api and _kind(provider) == "litellm":
            problems.append((("providers", i, "responses_api"), _NATIVE_ONLY))
    seen_models: set[str] = set()
    for m, model in enumerate(config.models):
        if model.name in seen_models:
            problems.append((("models", m, "name"), f"duplicate model name {model.name!r}"))
        seen_models.add(model.name)
        for d, deployment in enumerate(model.deployments):
            if deployment.provider not in providers:
                problems.append(
                    (
                        ("models", m, "deployments", d, "provider"),
                        f"unknown provider {deployment.provider!r}; declared: {sorted(providers)}",
                    )
                )
            elif deployment.responses_api and _kind(providers[deployment.provider]) == "litellm":
                problems.append((("models", m, "deployments", d, "responses_api"), _NATIVE_ONLY))
    return problems + _rag_cross_check(config, seen_models)


def _rag_cross_check(config: GatewayConfig, models: set[str]) -> list[tuple[Path_, str]]:
    problems: list[tuple[Path_, str]] = []
    for c, collection in enumerate(config.rag.collections):
        where: Path_ = ("rag", "collections", c)
        if collection.embedder == "gateway" and collection.embedding_model not in models:
            problems.append(((*where, "embedding_model"), "embedder: gateway needs a model of this config"))
        for part in ("expand", "rerank"):
            option = getattr(collection, part)
            if option is not None and option.model not in models:
                problems.append(((*where, part, "model"), f"unknown model {option.model!r}"))
    return problems


def parse_config(text: str, source: str = "<config>") -> GatewayConfig:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError([f"{source}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if data is None:
        data = {}
    lines = _line_index(node) if node is not None else {}
    if not isinstance(data, dict):
        raise ConfigError([f"{source}:1: the top level must be a mapping with providers and models"])
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [
                f"{source}:{_line_for(tuple(err['loc']), lines)}: {_dotted(tuple(err['loc']))}: {err['msg']}"
                for err in exc.errors()
            ]
        ) from None
    problems = _cross_check(config)
    if problems:
        raise ConfigError(
            [f"{source}:{_line_for(loc, lines)}: {_dotted(loc)}: {msg}" for loc, msg in problems]
        )
    return config


def load_config(path: Path) -> GatewayConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc.strerror}"]) from None
    config = parse_config(text, str(path))
    for collection in config.rag.collections:  # seed paths are relative to the config file
        collection.seed = [p if p.is_absolute() else path.parent / p for p in collection.seed]
    return config


DEMO_CONFIG_PATH = Path(__file__).parent / "demo" / "demo.yaml"
