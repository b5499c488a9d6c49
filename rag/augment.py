"""Putting retrieved chunks into the prompt, and citing them in the answer.

The context goes in through a template (`{context}` and `{question}` placeholders)
as a system message after the client's own system messages, or prefixed to the last
user message. Sources are numbered `[1]`, `[2]`… in the context; the answer then
carries them as `message.annotations` of type `url_citation` (OpenAI's shape; where
the model wrote a marker like `[2]`, `start_index`/`end_index` point at it) and as a
top-level `citations` list of URLs (Perplexity's shape).
"""

from __future__ import annotations

from typing import Any

from rag.store import Hit

DEFAULT_TEMPLATE = (
    "Answer using the context below when it is relevant. It comes from the writing of the person "
    "you speak for; keep to what it says, and cite the sources you use by their number, like [1].\n\n"
    "Context:\n{context}"
)


def last_user_text(messages: list[Any]) -> str:
    """The text of the last user turn (string content, or the text parts of a list)."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
                )
            return ""
    return ""


def sources(hits: list[Hit]) -> list[tuple[str, str]]:
    """(url, title) of each distinct source, in order of first appearance."""
    seen: dict[str, str] = {}
    for hit in hits:
        url = str(hit.payload.get("url") or hit.payload.get("source") or "")
        if url and url not in seen:
            seen[url] = str(hit.payload.get("title") or "")
    return list(seen.items())


def context_block(hits: list[Hit]) -> str:
    numbers = {url: i for i, (url, _) in enumerate(sources(hits), 1)}
    parts = []
    for hit in hits:
        url = str(hit.payload.get("url") or hit.payload.get("source") or "")
        title = str(hit.payload.get("title") or "")
        parts.append(f"[{numbers.get(url, 0)}] {title} ({url})\n{hit.text}")
    return "\n\n".join(parts)


def augment(messages: list[Any], hits: list[Hit], template: str, role: str = "system") -> list[Any]:
    """A new message list with the context in it; the original is left untouched."""
    if not hits:
        return messages
    question = last_user_text(messages)
    text = template.replace("{context}", context_block(hits)).replace("{question}", question)
    if role == "user":
        out = list(messages)
        for i in range(len(out) - 1, -1, -1):
            if isinstance(out[i], dict) and out[i].get("role") == "user":
                content = out[i].get("content")
                merged: Any = f"{text}\n\n{content}" if isinstance(content, str) else [
                    {"type": "text", "text": text}, *(content or [])
                ]  # fmt: skip
                out[i] = {**out[i], "content": merged}
                break
        return out
    leading = 0
    while (
        leading < len(messages)
        and isinstance(messages[leading], dict)
        and (messages[leading].get("role") in ("system", "developer"))
    ):
        leading += 1
    return [*messages[:leading], {"role": "system", "content": text}, *messages[leading:]]


def url_annotations(hits: list[Hit], answer: str = "") -> list[dict[str, Any]]:
    """`url_citation` annotations; the span of the first `[n]` marker in the answer where there is one."""
    out = []
    for n, (url, title) in enumerate(sources(hits), 1):
        marker = f"[{n}]"
        start = answer.find(marker)
        span = (start, start + len(marker)) if start >= 0 else (0, 0)
        out.append(
            {
                "type": "url_citation",
                "url_citation": {"url": url, "title": title, "start_index": span[0], "end_index": span[1]},
            }
        )
    return out


def citation_urls(hits: list[Hit]) -> list[str]:
    return [url for url, _ in sources(hits)]
