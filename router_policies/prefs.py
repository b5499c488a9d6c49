"""Provider preferences: OpenRouter's `provider` object, model suffixes, and defaults.

A request may steer routing with `provider: {order, allow_fallbacks, only, ignore,
sort, max_price, data_collection, require_parameters, preferred_max_latency,
preferred_min_throughput, quantizations, zdr}` (OpenRouter's names and meanings) and
with a `:nitro` (sort by throughput) or `:floor` (sort by price) suffix on the model
name. `sort` is a string or `{"by": ..., "partition": "model"|"none"}`; the two
targets are a number (the p50) or `{p50, p75, p90, p99}`, every given cutoff having
to hold for a deployment to count as meeting the target. Config may set the same fields as defaults per model and per key;
`merge` layers them field by field, the request winning.

Bad input raises `PrefsError` naming the field, so the client gets a 400 that says
what to fix instead of silently routing some other way.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

SORTS = ("price", "latency", "throughput")
PARTITIONS = ("model", "none")
SUFFIX_SORTS = {"nitro": "throughput", "floor": "price"}
PERCENTILES = ("p50", "p75", "p90", "p99")
QUANTIZATIONS = ("int4", "int8", "fp4", "fp6", "fp8", "fp16", "bf16", "fp32", "unknown")
_KNOWN = (
    "order",
    "allow_fallbacks",
    "only",
    "ignore",
    "sort",
    "max_price",
    "data_collection",
    "require_parameters",
    "preferred_max_latency",
    "preferred_min_throughput",
    "quantizations",
    "zdr",
)


class PrefsError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True, slots=True)
class MaxPrice:
    prompt: float | None = None  # USD per million prompt tokens
    completion: float | None = None


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """A target per percentile: seconds of time to first token, or tokens per second."""

    p50: float | None = None
    p75: float | None = None
    p90: float | None = None
    p99: float | None = None

    def items(self) -> list[tuple[str, float]]:
        return [(q, v) for q in PERCENTILES if (v := getattr(self, q)) is not None]


@dataclass(frozen=True, slots=True)
class ProviderPrefs:
    """Every field None means "not said": defaults fill it, then built-in behaviour applies."""

    order: tuple[str, ...] | None = None
    allow_fallbacks: bool | None = None
    only: tuple[str, ...] | None = None
    ignore: tuple[str, ...] | None = None
    sort: str | None = None
    max_price: MaxPrice | None = None
    data_collection: str | None = None
    require_parameters: bool | None = None
    preferred_max_latency: Cutoffs | None = None  # seconds to first token
    preferred_min_throughput: Cutoffs | None = None  # tokens per second
    partition: str | None = None  # of `sort`: "model" (default) or "none"
    quantizations: tuple[str, ...] | None = None
    zdr: bool | None = None

    @property
    def has_targets(self) -> bool:
        return self.preferred_max_latency is not None or self.preferred_min_throughput is not None

    def merge(self, over: ProviderPrefs | None) -> ProviderPrefs:
        """These prefs with every field `over` sets taking its place."""
        if over is None or over is NO_PREFS:
            return self
        if self is NO_PREFS:  # the common case (no defaults): nothing to layer
            return over
        changes = {f.name: getattr(over, f.name) for f in fields(over) if getattr(over, f.name) is not None}
        return replace(self, **changes) if changes else self

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, MaxPrice):
                value = {
                    k: v
                    for k, v in (("prompt", value.prompt), ("completion", value.completion))
                    if v is not None
                }
            elif isinstance(value, Cutoffs):
                value = dict(value.items())
            elif isinstance(value, tuple):
                value = list(value)
            if value is not None and f.name != "partition":
                out[f.name] = value
        if self.partition is not None:
            out["sort"] = {"by": self.sort, "partition": self.partition}
        return out


NO_PREFS = ProviderPrefs()


def _names(raw: Any, param: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise PrefsError(param, f"{param} must be a list of provider names")
    return tuple(x.lower() for x in raw)


def _bool(raw: Any, param: str) -> bool | None:
    if raw is None or isinstance(raw, bool):
        return raw
    raise PrefsError(param, f"{param} must be true or false")


def _price(raw: Any, param: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
        raise PrefsError(param, f"{param} must be a non-negative number (USD per million tokens)")
    return float(raw)


def _max_price(raw: Any) -> MaxPrice | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise PrefsError(
            "provider.max_price", 'provider.max_price must be an object like {"prompt": 1, "completion": 2}'
        )
    unknown = sorted(set(raw) - {"prompt", "completion", "request", "image"})
    if unknown:
        raise PrefsError("provider.max_price", f"provider.max_price has unknown fields {unknown}")
    return MaxPrice(
        _price(raw.get("prompt"), "provider.max_price.prompt"),
        _price(raw.get("completion"), "provider.max_price.completion"),
    )


def _cutoffs(raw: Any, param: str, unit: str) -> Cutoffs | None:
    """A number (the p50) or an object of percentiles → `Cutoffs`."""
    if raw is None:
        return None
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - set(PERCENTILES))
        if unknown:
            raise PrefsError(param, f"{param} has unknown fields {unknown}; known: {list(PERCENTILES)}")
        values = {q: _positive(raw.get(q), f"{param}.{q}", unit) for q in PERCENTILES}
        return Cutoffs(**values) if any(v is not None for v in values.values()) else None
    return Cutoffs(p50=_positive(raw, param, unit))


def _positive(raw: Any, param: str, unit: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not raw > 0 or raw == float("inf"):
        raise PrefsError(param, f"{param} must be a positive number ({unit}) or an object of p50/p75/p90/p99")
    return float(raw)


def _sort(raw: Any, where: str) -> tuple[str | None, str | None]:
    """`sort` as a string, or `{"by", "partition"}` → (by, partition)."""
    param = f"{where}.sort"
    if raw is None:
        return None, None
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - {"by", "partition"})
        if unknown:
            raise PrefsError(param, f"{param} has unknown fields {unknown}; known: ['by', 'partition']")
        by, partition = raw.get("by"), raw.get("partition")
        if by not in SORTS:
            raise PrefsError(f"{param}.by", f"{param}.by must be one of {list(SORTS)}")
        if partition is not None and partition not in PARTITIONS:
            raise PrefsError(f"{param}.partition", f"{param}.partition must be one of {list(PARTITIONS)}")
        return by, partition
    if raw not in SORTS:
        raise PrefsError(param, f'{param} must be one of {list(SORTS)} or {{"by": ..., "partition": ...}}')
    return raw, None


def _quantizations(raw: Any, param: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(x, str) and x.lower() in QUANTIZATIONS for x in raw):
        raise PrefsError(param, f"{param} must be a list of quantization levels from {list(QUANTIZATIONS)}")
    return tuple(x.lower() for x in raw)


def parse_prefs(raw: Any, where: str = "provider") -> ProviderPrefs:
    """The `provider` object of a request (or a config default) → `ProviderPrefs`."""
    if raw is None:
        return NO_PREFS
    if not isinstance(raw, dict):
        raise PrefsError(where, f"{where} must be an object")
    unknown = sorted(set(raw) - set(_KNOWN))
    if unknown:
        raise PrefsError(where, f"{where} has unknown fields {unknown}; known: {list(_KNOWN)}")
    sort, partition = _sort(raw.get("sort"), where)
    data_collection = raw.get("data_collection")
    if data_collection not in (None, "allow", "deny"):
        raise PrefsError(f"{where}.data_collection", f'{where}.data_collection must be "allow" or "deny"')
    return ProviderPrefs(
        order=_names(raw.get("order"), f"{where}.order"),
        allow_fallbacks=_bool(raw.get("allow_fallbacks"), f"{where}.allow_fallbacks"),
        only=_names(raw.get("only"), f"{where}.only"),
        ignore=_names(raw.get("ignore"), f"{where}.ignore"),
        sort=sort,
        max_price=_max_price(raw.get("max_price")),
        data_collection=data_collection,
        require_parameters=_bool(raw.get("require_parameters"), f"{where}.require_parameters"),
        preferred_max_latency=_cutoffs(
            raw.get("preferred_max_latency"), f"{where}.preferred_max_latency", "seconds"
        ),
        preferred_min_throughput=_cutoffs(
            raw.get("preferred_min_throughput"), f"{where}.preferred_min_throughput", "tokens per second"
        ),
        partition=partition,
        quantizations=_quantizations(raw.get("quantizations"), f"{where}.quantizations"),
        zdr=_bool(raw.get("zdr"), f"{where}.zdr"),
    )


def split_suffix(model: str) -> tuple[str, ProviderPrefs | None]:
    """`llama:nitro` → (`llama`, sort=throughput); `llama:floor` → sort=price; else unchanged."""
    base, sep, suffix = model.rpartition(":")
    if sep and base and suffix in SUFFIX_SORTS:
        return base, ProviderPrefs(sort=SUFFIX_SORTS[suffix])
    return model, None
