"""Per-provider normalisation of answers into OpenAI's shape.

Each provider's deviations are fixed here, at the adapter, so nothing above the
providers package needs to know which provider answered:

- Groq puts streaming usage in `x_groq.usage`; it is lifted to `usage`.
- Perplexity returns `citations` (URLs) and `search_results`; they are mapped to
  `message.annotations` entries of type `url_citation` (OpenAI's shape for web
  citations) and also kept as they are, for clients that read Perplexity's fields.

A quirk is chosen by name in the preset, never by testing the provider's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from providers.types import JSON


def _lift_groq_usage(payload: JSON) -> None:
    x_groq = payload.get("x_groq")
    if isinstance(x_groq, dict) and isinstance(x_groq.get("usage"), dict) and not payload.get("usage"):
        payload["usage"] = x_groq["usage"]


def _url_citations(payload: JSON) -> list[JSON]:
    citations = payload.get("citations")
    if not isinstance(citations, list):
        return []
    titles: dict[str, str] = {}
    for result in payload.get("search_results") or []:
        if isinstance(result, dict) and isinstance(result.get("url"), str):
            titles[result["url"]] = str(result.get("title") or "")
    annotations: list[JSON] = []
    for url in citations:
        if isinstance(url, str):
            annotations.append(
                {
                    "type": "url_citation",
                    "url_citation": {
                        "url": url,
                        "title": titles.get(url, ""),
                        "start_index": 0,
                        "end_index": 0,
                    },
                }
            )
    return annotations


def _perplexity_response(body: JSON) -> None:
    annotations = _url_citations(body)
    if not annotations:
        return
    for choice in body.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            message.setdefault("annotations", []).extend(annotations)


class StreamNormaliser:
    """Stateful per-stream fixer: some quirks must act once per stream, not per chunk."""

    __slots__ = ("_citations_sent", "_lift_usage", "_perplexity")

    def __init__(self, names: frozenset[str]) -> None:
        self._lift_usage = "groq" in names
        self._perplexity = "perplexity" in names
        self._citations_sent = False

    def chunk(self, chunk: JSON) -> None:
        if self._lift_usage:
            _lift_groq_usage(chunk)
        if self._perplexity and not self._citations_sent:
            annotations = _url_citations(chunk)
            choices = chunk.get("choices")
            if annotations and isinstance(choices, list) and choices and isinstance(choices[0], dict):
                delta = choices[0].get("delta")
                if isinstance(delta, dict):
                    delta.setdefault("annotations", []).extend(annotations)
                    self._citations_sent = True


_RESPONSE_FIXERS: dict[str, Callable[[JSON], None]] = {
    "groq": _lift_groq_usage,
    "perplexity": _perplexity_response,
}
KNOWN_QUIRKS = frozenset({*_RESPONSE_FIXERS, "vllm"})


class Quirks:
    """The set of quirks one provider needs; built once per adapter."""

    __slots__ = ("_fixers", "names")

    def __init__(self, names: frozenset[str] | set[str] | tuple[str, ...] = ()) -> None:
        unknown = set(names) - KNOWN_QUIRKS
        if unknown:
            raise ValueError(f"unknown quirks: {sorted(unknown)}")
        self.names = frozenset(names)
        self._fixers = [_RESPONSE_FIXERS[n] for n in sorted(self.names) if n in _RESPONSE_FIXERS]

    def response(self, body: Any) -> None:
        for fix in self._fixers:
            fix(body)

    def stream(self) -> StreamNormaliser:
        return StreamNormaliser(self.names)
