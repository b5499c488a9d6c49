"""Legacy `/v1/completions` onto Chat Completions, and back: small pure functions.

The prompt becomes one user message; the answer's message text becomes the
choice's `text`. Every routed chat model can serve it this way (OpenRouter does the
same), at the price of the chat template around the prompt: a raw-completion model
that should continue the prompt verbatim is not what this gives. `echo`, `suffix`,
`logprobs` and batched prompts have no chat equivalent and are refused with a 400.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError

JSON = dict[str, Any]

_SAME = (
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stream",
    "stream_options",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "user",
    "logit_bias",
    "provider",
    "models",
    "rag",
)


def _bad(param: str, message: str) -> GatewayError:
    return GatewayError(400, f"invalid request: {param}: {message}", param=param)


def prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    raise _bad("prompt", "must be one string (batched prompts and token ids are not supported)")


def to_chat(body: JSON) -> JSON:
    for field in ("echo", "logprobs"):
        if body.get(field):
            raise _bad(field, f"{field} is not supported: the completion is served by a chat model")
    if body.get("suffix"):
        raise _bad("suffix", "suffix (insertion) is not supported: the completion is served by a chat model")
    chat: JSON = {k: body[k] for k in _SAME if k in body}
    chat["messages"] = [{"role": "user", "content": prompt_text(body.get("prompt"))}]
    return chat


def _choice(choice: Any, text: str | None) -> JSON:
    source = choice if isinstance(choice, dict) else {}
    return {
        "text": text or "",
        "index": source.get("index", 0),
        "logprobs": None,
        "finish_reason": source.get("finish_reason"),
    }


def _envelope(source: JSON) -> JSON:
    out = {
        "id": source.get("id"),
        "object": "text_completion",
        "created": source.get("created"),
        "model": source.get("model"),
    }
    for extra in ("provider", "system_fingerprint", "gateway", "resumed"):
        if extra in source:
            out[extra] = source[extra]
    return out


def from_chat(answer: JSON) -> JSON:
    """A finished chat completion as a `text_completion`."""
    out = _envelope(answer)
    out["choices"] = [
        _choice(c, ((c.get("message") or {}).get("content") if isinstance(c, dict) else None))
        for c in answer.get("choices") or []
    ]
    if "usage" in answer:
        out["usage"] = answer["usage"]
    return out


def from_chunk(chunk: JSON) -> JSON:
    """One relayed chat chunk (text, finish, usage or the gateway's error chunk) as a completion chunk."""
    out = _envelope(chunk)
    out["choices"] = [
        _choice(c, (c.get("delta") or {}).get("content") if isinstance(c, dict) else None)
        for c in chunk.get("choices") or []
    ]
    for extra in ("usage", "error"):
        if extra in chunk:
            out[extra] = chunk[extra]
    return out
