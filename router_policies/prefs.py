"""Provider preferences: OpenRouter's `provider` object, model suffixes, and defaults.

A request may steer routing with `provider: {order, allow_fallbacks, only, ignore,
sort, max_price, data_collection, require_parameters}` (OpenRouter's names and
meanings) and with a `:nitro` (sort by throughput) or `:floor` (sort by price) suffix
on the model name. Config may set the same fields as defaults per model and per key;
`merge` layers them field by field, the request winning.

Bad input raises `PrefsError` naming the field, so the client gets a 400 that says
what to fix instead of silently routing some other way.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

SORTS = ("price", "latency", "throughput")
SUFFIX_SORTS = {"nitro": "throughput", "floor": "price"}
_KNOWN = (
    "order",
    "allow_fallbacks",
    "only",
    "ignore",
    "sort",
    "max_price",
    "data_collection",
    "require_parameters",
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

    def merge(self, over: ProviderPrefs | None) -> ProviderPrefs:
        """These prefs with every field `over` sets taking its place."""
        if over is None:
            return self
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
            elif isinstance(value, tuple):
                value = list(value)
            if value is not None:
                out[f.name] = value
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


def parse_prefs(raw: Any, where: str = "provider") -> ProviderPrefs:
    """The `provider` object of a request (or a config default) → `ProviderPrefs`."""
    if raw is None:
        return NO_PREFS
    if not isinstance(raw, dict):
        raise PrefsError(where, f"{where} must be an object")
    unknown = sorted(set(raw) - set(_KNOWN))
    if unknown:
        raise PrefsError(where, f"{where} has unknown fields {unknown}; known: {list(_KNOWN)}")
    sort = raw.get("sort")
    if sort is not None and sort not in SORTS:
        raise PrefsError(f"{where}.sort", f"{where}.sort must be one of {list(SORTS)}")
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
    )


def split_suffix(model: str) -> tuple[str, ProviderPrefs | None]:
    """`llama:nitro` → (`llama`, sort=throughput); `llama:floor` → sort=price; else unchanged."""
    base, sep, suffix = model.rpartition(":")
    if sep and base and suffix in SUFFIX_SORTS:
        return base, ProviderPrefs(sort=SUFFIX_SORTS[suffix])
    return model, None
