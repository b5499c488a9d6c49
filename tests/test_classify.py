"""Upstream error answers to typed errors: by status and the error's own fields, never by provider."""

from __future__ import annotations

import orjson
import pytest

from providers.classify import classify_status, is_context_length_error
from providers.errors import (
    ContextLengthExceeded,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamRateLimited,
    UpstreamUnavailable,
)


def body(**error: object) -> bytes:
    return orjson.dumps({"error": error})


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (429, UpstreamRateLimited, True),
        (500, UpstreamUnavailable, True),
        (502, UpstreamUnavailable, True),
        (503, UpstreamUnavailable, True),
        (599, UpstreamUnavailable, True),
        (408, UpstreamUnavailable, True),
        (401, UpstreamAuthError, True),
        (403, UpstreamAuthError, True),
        (400, UpstreamBadRequest, False),
        (404, UpstreamBadRequest, False),
        (413, UpstreamBadRequest, False),
        (422, UpstreamBadRequest, False),
        (499, UpstreamBadRequest, False),
    ],
)
def test_status_decides_the_type(status, kind, retryable):
    error = classify_status(status, {}, body(message="nope", code="some_code", param="p"), "prov")
    assert type(error) is kind and error.retryable is retryable
    assert error.status == status and error.provider == "prov"
    assert error.code == "some_code" and error.param == "p"
    assert error.message == (
        "nope" if kind is not UpstreamAuthError else "the provider rejected the gateway's credentials"
    )


def test_fields_of_the_envelope_are_kept():
    error = classify_status(
        400, {}, body(message="bad temperature", code="invalid_value", param="temperature"), "p"
    )
    assert (
        error.message == "bad temperature" and error.code == "invalid_value" and error.param == "temperature"
    )


def test_type_stands_in_for_a_missing_code():
    error = classify_status(400, {}, body(message="m", type="invalid_request_error"), "p")
    assert error.code == "invalid_request_error" and error.param is None
    bare = classify_status(400, {}, body(message="m"), "p")
    assert bare.code is None and bare.param is None and bare.message == "m"


def test_credentials_message_is_the_gateways_own():
    error = classify_status(401, {}, body(message="Incorrect API key provided: sk-abc***"), "p")
    assert error.message == "the provider rejected the gateway's credentials"


@pytest.mark.parametrize("status", [400, 413, 422])
@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("This model's maximum context length is 8192 tokens", None),
        ("Please reduce", "context_length_exceeded"),
        ("prompt is too long: 210000 tokens > 200000 maximum", None),
        ("Input exceeds the CONTEXT WINDOW", None),
        ("too many tokens", None),
        ("`inputs` tokens + `max_new_tokens` must be <= 8193", None),
        ("the context length was exceeded", None),
    ],
)
def test_context_length_errors_are_recognised_on_client_statuses(status, message, code):
    error = classify_status(status, {}, body(message=message, code=code), "p")
    assert type(error) is ContextLengthExceeded and error.retryable is True and error.message == message


@pytest.mark.parametrize("status", [404, 409])
def test_context_wording_on_other_statuses_stays_a_bad_request(status):
    error = classify_status(status, {}, body(message="maximum context length is 10"), "p")
    assert type(error) is UpstreamBadRequest


def test_context_marker_checks():
    assert is_context_length_error(None, "context_length_exceeded")
    assert is_context_length_error("Maximum Context Length reached", None)
    assert not is_context_length_error(None, None)
    assert not is_context_length_error("temperature out of range", "invalid_value")


def test_retry_after_is_read_from_the_headers():
    error = classify_status(429, {"retry-after": "7"}, body(message="slow down"), "p")
    assert error.retry_after_s == 7.0
    assert classify_status(503, {}, b"", "p").retry_after_s is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"<html>bad gateway</html>", "upstream answered HTTP 502"),
        (b"", "upstream answered HTTP 502"),
        (orjson.dumps({"error": "plain string error"}), "plain string error"),
        (orjson.dumps({"detail": "FastAPI detail"}), "FastAPI detail"),
        (orjson.dumps({"detail": ""}), "upstream answered HTTP 502"),
        (orjson.dumps({"other": 1}), "upstream answered HTTP 502"),
        (orjson.dumps(["not", "a", "dict"]), "upstream answered HTTP 502"),
        (orjson.dumps({"error": {"code": 5}}), "upstream answered HTTP 502"),
    ],
)
def test_bodies_that_are_not_the_envelope(raw, message):
    error = classify_status(502, {}, raw, "p")
    assert error.message == message and type(error) is UpstreamUnavailable


def test_a_numeric_code_becomes_text_and_long_messages_are_cut():
    error = classify_status(400, {}, body(message="x" * 600, code=400, param=0), "p")
    assert error.code == "400" and error.param == "0" and error.message == "x" * 500
    assert classify_status(400, {}, body(message="y" * 500), "p").message == "y" * 500
