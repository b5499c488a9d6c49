"""Prices and context windows from litellm's bundled model cost map.

The map is a JSON file inside the litellm package; it is read directly, once, at
start-up, without importing litellm (which costs seconds and ~170 MB). Config
values override it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

_MAP_FILE = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    input_price_per_mtok: float | None
    output_price_per_mtok: float | None
    max_input_tokens: int | None
    cached_input_price_per_mtok: float | None = None  # litellm's cache_read_input_token_cost
    reasoning_price_per_mtok: float | None = None  # litellm's output_cost_per_reasoning_token


def _litellm_map_path() -> Path | None:
    spec = importlib.util.find_spec("litellm")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / _MAP_FILE
    return path if path.exists() else None


class PriceCatalog:
    def __init__(self, entries: dict[str, Any]) -> None:
        self._entries = entries

    @classmethod
    def load(cls) -> PriceCatalog:
        path = _litellm_map_path()
        if path is None:
            return cls({})
        return cls(orjson.loads(path.read_bytes()))

    def lookup(self, price_prefix: str, model: str) -> CatalogEntry | None:
        """Find `prefix/model`, then `model`; per-token prices become USD per million tokens."""
        raw = self._entries.get(f"{price_prefix}/{model}") or self._entries.get(model)
        if not isinstance(raw, dict):
            return None

        def per_mtok(key: str) -> float | None:
            value = raw.get(key)
            return float(value) * 1_000_000 if isinstance(value, int | float) else None

        max_input = raw.get("max_input_tokens") or raw.get("max_tokens")
        return CatalogEntry(
            input_price_per_mtok=per_mtok("input_cost_per_token"),
            output_price_per_mtok=per_mtok("output_cost_per_token"),
            max_input_tokens=int(max_input) if isinstance(max_input, int | float) else None,
            cached_input_price_per_mtok=per_mtok("cache_read_input_token_cost"),
            reasoning_price_per_mtok=per_mtok("output_cost_per_reasoning_token"),
        )
