"""litellm adapter, without a network: it is imported lazily, and its exceptions map to ours by class.

The wire contract (the Anthropic recording on the replay server) is in
`test_litellm_adapter.py`; these checks need no event loop.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from providers.errors import (
    ContextLengthExceeded,
    ProviderError,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.litellm_adapter import LiteLLMAdapter
from providers.litellm_errors import translate_litellm_error
from providers.redact import Redactor
from tests.contract.recordings import API_KEY

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def litellm() -> ModuleType:
    """Import litellm once for this module (about 3 s)."""
    import litellm as module

    return module


def test_importing_the_adapter_does_not_import_litellm() -> None:
    code = (
        "import sys\n"
        "from providers.litellm_adapter import LiteLLMAdapter\n"
        "LiteLLMAdapter('anthropic', 'anthropic', api_key='k', api_base='http://127.0.0.1:9')\n"
        "assert 'litellm' not in sys.modules, 'litellm was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_the_adapter_never_shows_its_key() -> None:
    adapter = LiteLLMAdapter("anthropic", "anthropic", api_key=API_KEY, api_base="http://127.0.0.1:9")
    assert adapter.name == "anthropic"
    assert adapter.litellm_provider == "anthropic"
    assert API_KEY not in repr(adapter)


# --------------------------------------------------------------------------- translation table


def _request() -> httpx.Request:
    return httpx.Request("POST", "https://api.anthropic.com/v1/messages")


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=_request())


_KW: dict[str, Any] = {"llm_provider": "anthropic", "model": "claude"}
CASES: list[tuple[str, Callable[[Any], BaseException], type[ProviderError]]] = [
    (
        "RateLimitError",
        lambda e: e.RateLimitError("slow", response=_response(429), **_KW),
        UpstreamRateLimited,
    ),
    (
        "ContextWindowExceededError",
        lambda e: e.ContextWindowExceededError("long", **_KW),
        ContextLengthExceeded,
    ),
    ("AuthenticationError", lambda e: e.AuthenticationError("bad key", **_KW), UpstreamAuthError),
    (
        "PermissionDeniedError",
        lambda e: e.PermissionDeniedError("no", response=_response(403), **_KW),
        UpstreamAuthError,
    ),
    ("PaymentRequiredError", lambda e: e.PaymentRequiredError("pay", **_KW), UpstreamAuthError),
    ("BadRequestError", lambda e: e.BadRequestError("bad", **_KW), UpstreamBadRequest),
    ("UnsupportedParamsError", lambda e: e.UnsupportedParamsError("n", **_KW), UpstreamBadRequest),
    ("NotFoundError", lambda e: e.NotFoundError("no model", **_KW), UpstreamBadRequest),
    (
        "UnprocessableEntityError",
        lambda e: e.UnprocessableEntityError("x", response=_response(422), **_KW),
        UpstreamBadRequest,
    ),
    ("Timeout", lambda e: e.Timeout("slow", **_KW), UpstreamTimeout),
    (
        "APIConnectionError",
        lambda e: e.APIConnectionError("down", request=_request(), **_KW),
        UpstreamConnectError,
    ),
    ("ServiceUnavailableError", lambda e: e.ServiceUnavailableError("busy", **_KW), UpstreamUnavailable),
    ("InternalServerError", lambda e: e.InternalServerError("boom", **_KW), UpstreamUnavailable),
    ("BadGatewayError", lambda e: e.BadGatewayError("bad gateway", **_KW), UpstreamUnavailable),
    (
        "APIError 502",
        lambda e: e.APIError(502, "bad gateway", request=_request(), **_KW),
        UpstreamUnavailable,
    ),
    ("APIError 418", lambda e: e.APIError(418, "teapot", request=_request(), **_KW), UpstreamProtocolError),
    (
        "BudgetExceededError",
        lambda e: e.BudgetExceededError(current_cost=2.0, max_budget=1.0),
        UpstreamProtocolError,
    ),
    ("RuntimeError", lambda e: RuntimeError("something else"), UpstreamProtocolError),
]


@pytest.mark.parametrize(("name", "build", "expected"), CASES, ids=[c[0] for c in CASES])
def test_translation_is_by_class(
    litellm: ModuleType, name: str, build: Callable[[Any], BaseException], expected: type[ProviderError]
) -> None:
    error = translate_litellm_error(build(litellm.exceptions), "anthropic")

    assert type(error) is expected
    assert error.provider == "anthropic"


def test_translation_reads_retry_after_and_scrubs_the_key(litellm: ModuleType) -> None:
    e = litellm.exceptions
    limited = e.RateLimitError(
        f"AnthropicException - rate limited for {API_KEY}",
        llm_provider="anthropic",
        model="claude",
        response=_response(429, {"retry-after": "12"}),
    )

    error = translate_litellm_error(limited, "anthropic", Redactor([API_KEY]))

    assert isinstance(error, UpstreamRateLimited)
    assert (error.status, error.retry_after_s) == (429, 12.0)
    assert API_KEY not in str(error)


def test_a_refused_connection_reported_as_server_error_is_a_connect_error(litellm: ModuleType) -> None:
    e = litellm.exceptions
    try:
        try:
            raise httpx.ConnectError("All connection attempts failed", request=_request())
        except httpx.ConnectError as cause:
            raise e.InternalServerError(
                "AnthropicException - connect", llm_provider="anthropic", model="c"
            ) from cause
    except e.InternalServerError as exc:
        assert type(translate_litellm_error(exc, "anthropic")) is UpstreamConnectError
