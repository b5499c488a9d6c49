"""Reading and validating request bodies.

The body is read with a hard size cap (checked against Content-Length first, then
while reading, so an oversized upload is refused without being buffered), parsed
with orjson, bounded in nesting depth, and checked against the fields the gateway
relies on, with strict types (`"stream": "false"` is a string, not a bool). The
original dict is what gets forwarded: unknown fields pass through to the upstream
untouched.

Depth matters because orjson parses up to 1024 levels but serialises at most 254:
a deeper body would parse, then fail on its way upstream. Counting brackets is one
C-speed pass over the bytes; only a body with enough of them to be that deep at
all is walked.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect, Request

from gateway.errors import GatewayError

JSON = dict[str, Any]

MAX_JSON_DEPTH = 64


async def read_json_object(request: Request, max_bytes: int) -> JSON:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    parts: list[bytes] = []
    size = 0
    try:
        async for part in request.stream():
            size += len(part)
            if size > max_bytes:
                raise _too_large(max_bytes)
            parts.append(part)
    except ClientDisconnect:  # gone, or cut off by the body deadline (gateway.server): nobody to answer
        raise GatewayError(408, "the request body did not arrive", code="request_timeout") from None
    raw = b"".join(parts)
    if not raw.strip():
        raise GatewayError(400, "the request body is empty; send a JSON object", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "the request body must be a JSON object", code="invalid_json")
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _depth_exceeds(body, MAX_JSON_DEPTH):
        raise GatewayError(
            400, f"the request body is nested deeper than {MAX_JSON_DEPTH} levels", code="invalid_json"
        )
    return body


def _depth_exceeds(value: Any, limit: int) -> bool:
    """True if arrays/objects nest more than `limit` deep; iterative, so no recursion limit."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _too_large(max_bytes: int) -> GatewayError:
    return GatewayError(
        413, f"the request body is larger than the limit of {max_bytes} bytes", code="request_too_large"
    )


ModelName = Annotated[str, Field(min_length=1)]


def _whole(value: Any) -> Any:
    """JSON has one number type: 16.0 is the integer 16 (JSON Schema agrees), 16.5 is not."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Put after an int's constraints: a strict integer that also takes a whole float (booleans
# and strings stay refused). After them, so the JSON schema keeps `minimum`/`maximum`.
WHOLE = BeforeValidator(_whole)
Count = Annotated[int, Field(ge=1), WHOLE]
_WHOLE_FIELDS = ("n", "max_tokens", "max_completion_tokens", "max_output_tokens")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[Any] | None = None


class StreamOptions(_Open):
    include_usage: bool | None = None


class ChatCompletionRequest(_Open):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1, le=128), WHOLE] | None = None
    max_tokens: Count | None = None
    max_completion_tokens: Count | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    models: list[ModelName] | None = None
    provider: dict[str, Any] | None = None


class ResponsesRequest(_Open):
    model: str = Field(min_length=1)
    input: str | list[Any] | None = None
    instructions: str | None = None
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    max_output_tokens: Count | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    tools: list[dict[str, Any]] | None = None
    models: list[ModelName] | None = None
    provider: dict[str, Any] | None = None


class TextBlock(_Open):
    type: Literal["text"]
    text: str


class Base64Source(_Open):
    type: Literal["base64"]
    media_type: str
    data: str


class UrlSource(_Open):
    type: Literal["url"]
    url: str


class ImageBlock(_Open):
    type: Literal["image"]
    source: Base64Source | UrlSource = Field(discriminator="type")


class ToolUseBlock(_Open):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(_Open):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[Any] | None = None


class ThinkingBlock(_Open):
    """The model's reasoning from an earlier turn: accepted, and not sent on (see the translator)."""

    type: Literal["thinking", "redacted_thinking"]


UserBlock = Annotated[TextBlock | ImageBlock | ToolResultBlock, Field(discriminator="type")]
AssistantBlock = Annotated[TextBlock | ToolUseBlock | ThinkingBlock, Field(discriminator="type")]


class UserMessage(_Open):
    role: Literal["user"]
    content: str | Annotated[list[UserBlock], Field(min_length=1)]


class AssistantMessage(_Open):
    role: Literal["assistant"]
    content: str | list[AssistantBlock]


class MessagesRequest(_Open):
    """Anthropic's Messages API: `max_tokens` is required there, and temperature tops out at 1.

    Messages are typed here so the API description shows them; `gateway.translate.anthropic`
    still checks what it translates (it also takes earlier turns' `thinking` blocks)."""

    model: str = Field(min_length=1)
    max_tokens: Count
    messages: list[Annotated[UserMessage | AssistantMessage, Field(discriminator="role")]] = Field(
        min_length=1
    )
    system: str | list[Any] | None = None
    stream: bool | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    tools: list[dict[str, Any]] | None = None
    models: list[ModelName] | None = None
    provider: dict[str, Any] | None = None


class CompletionsRequest(_Open):
    model: str = Field(min_length=1)
    # One prompt: a string, or a list of one string (batches and token ids are refused).
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    stream: bool | None = None
    max_tokens: Count | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    models: list[ModelName] | None = None
    provider: dict[str, Any] | None = None


class EmbeddingsRequest(_Open):
    model: str = Field(min_length=1)
    input: Annotated[str, Field(min_length=1)] | Annotated[list[Any], Field(min_length=1)]


# pydantic names the member of a union that failed (`str`, `list[any]`, `constrained-str`,
# `function-before[...]`) in an error's location; a client's `param` names fields only.
_UNION_MEMBER = re.compile(r"^(?:str|int|float|bool|none|list\[.*|dict\[.*|[a-z]+-[a-z].*)$")


def _param(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, str) and _UNION_MEMBER.match(part):
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def validation_error(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> GatewayError:
    """A 400 naming the first offending field (OpenAI's `param`), under `prefix` for a nested object."""
    first = exc.errors()[0]
    param = _param((*prefix, *first["loc"]))
    return GatewayError(400, f"invalid request: {param}: {first['msg']}", param=param or None)


def validate(schema: type[BaseModel], body: JSON) -> None:
    """Raise a 400 naming the first offending field; whole-float counts become ints in `body`.

    The body is forwarded as it is, so `max_tokens: 16.0` is turned into 16 here, once
    valid: limits that reserve `max_tokens` and upstreams then see an integer."""
    try:
        schema.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None
    for name in _WHOLE_FIELDS:
        if isinstance(body.get(name), float):
            body[name] = int(body[name])
