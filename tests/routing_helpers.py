"""Helpers for the routing tests: configs with prices, an SDK client, bounded waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import openai
import yaml

MESSAGES = [{"role": "user", "content": "hi"}]


def routing_config(
    deployments: dict[str, dict[str, Any]],
    *,
    model: str = "m",
    routing: dict[str, Any] | None = None,
    top: dict[str, Any] | None = None,
    providers: dict[str, dict[str, Any]] | None = None,
    extra_models: list[dict[str, Any]] | None = None,
) -> str:
    """One model served by one deployment per provider; `deployments[name]` needs `url`, may set
    `price` (input and output, $/Mtok) and any deployment field; `providers[name]` adds provider fields."""
    provider_list = []
    deployment_list = []
    for name, spec in deployments.items():
        spec = dict(spec)
        provider_list.append({"name": name, "base_url": spec.pop("url"), **(providers or {}).get(name, {})})
        price = spec.pop("price", 1.0)
        deployment_list.append(
            {
                "provider": name,
                "model": f"{name}-model",
                "input_price_per_mtok": price,
                "output_price_per_mtok": price,
                **spec,
            }
        )
    model_entry: dict[str, Any] = {"name": model, "deployments": deployment_list}
    if routing:
        model_entry["routing"] = routing
    config: dict[str, Any] = {"providers": provider_list, "models": [model_entry, *(extra_models or [])]}
    config.update(top or {})
    return yaml.safe_dump(config, sort_keys=False)


def client(url: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30, default_headers=headers or None
    )


def provider_of(answer: Any) -> str:
    return str((answer.model_extra or {})["provider"])


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.01)
