"""What every part of the API description shares: the error envelopes and the security schemes."""

from __future__ import annotations

from typing import Any, Literal

from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field


class Open(BaseModel):
    """A response object that may carry more fields than described (upstreams add their own)."""

    model_config = ConfigDict(extra="allow")


class ErrorObject(Open):
    message: str
    type: str
    code: str | int | None
    param: str | None
    metadata: dict[str, Any] | None = None


class ErrorEnvelope(BaseModel):
    """OpenAI's error shape; every error of the gateway but `/v1/messages`' leaves in it."""

    error: ErrorObject


class AnthropicErrorObject(BaseModel):
    type: str
    message: str


class AnthropicError(BaseModel):
    """Anthropic's error shape, used by `/v1/messages` only (what the Anthropic SDK parses)."""

    type: Literal["error"]
    error: AnthropicErrorObject


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = Field(description="always true")


VIRTUAL_KEY = HTTPBearer(
    scheme_name="VirtualKey",
    description="A virtual key minted by the admin (`POST /admin/api/keys`), as `Authorization: Bearer sk-gw-…`."
    " Not needed on a gateway started without an admin key (the open demo, loopback only).",
    auto_error=False,
)
ADMIN_KEY = HTTPBearer(
    scheme_name="AdminKey",
    description="The admin key (`GATEWAY_ADMIN_KEY`), as `Authorization: Bearer …`. The dashboard's session"
    " cookie is accepted too (then writes need its `x-csrf-token`).",
    auto_error=False,
)
METRICS_TOKEN = HTTPBearer(
    scheme_name="MetricsToken",
    description="`GATEWAY_METRICS_TOKEN`, as `Authorization: Bearer …` (`/metrics` only).",
    auto_error=False,
)
ANTHROPIC_KEY = APIKeyHeader(
    name="x-api-key",
    scheme_name="AnthropicApiKey",
    description="A virtual key in `x-api-key`, as the Anthropic SDK sends it (`/v1/messages` only).",
    auto_error=False,
)


def errors(*statuses: int, model: type[BaseModel] = ErrorEnvelope) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for error statuses, each with the envelope (and a catch-all 4XX)."""
    described = {
        400: "Invalid request (names the offending field in `param`)",
        401: "Missing or unknown key",
        402: "The key's budget is spent",
        403: "Not allowed for this key (model not on its allow-list, admin only, host or origin refused)",
        404: "Not found",
        408: "The request body did not arrive in time",
        409: "Conflict",
        413: "The request body is too large",
        415: "Not sent as JSON",
        429: "The key's rpm or tpm limit (with `retry-after`)",
        502: "Every deployment failed, or a backing service is unreachable",
        503: "No deployment available (all circuit breakers open)",
        504: "Every deployment timed out",
    }
    out: dict[int | str, dict[str, Any]] = {
        status: {"model": model, "description": described.get(status, "Error")} for status in statuses
    }
    out["4XX"] = {"model": model, "description": "Any other client error, in the same envelope"}
    return out
