"""Bad input and broken upstreams get OpenAI-shaped errors the SDK maps to the right class."""

from __future__ import annotations

import httpx
import openai
import pytest

from gateway.simulator import CONTEXT_LENGTH_MESSAGE, Behaviour
from tests.harness import config_for

MESSAGES = [{"role": "user", "content": "hi"}]


def _client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


def _assert_envelope(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code", "param"}
    assert "Traceback" not in response.text
    return error


def test_malformed_json_is_400(fake, gateway):
    gw = gateway(config_for({"p": fake().url}))
    response = httpx.post(f"{gw.url}/v1/chat/completions", content=b'{"model": "m", ', timeout=10)
    error = _assert_envelope(response, 400)
    assert error["code"] == "invalid_json"


def test_non_object_body_is_400(fake, gateway):
    gw = gateway(config_for({"p": fake().url}))
    error = _assert_envelope(httpx.post(f"{gw.url}/v1/chat/completions", json=[1, 2], timeout=10), 400)
    assert "JSON object" in error["message"]


def test_schema_violation_names_the_param(fake, gateway):
    gw = gateway(config_for({"p": fake().url}))
    with pytest.raises(openai.BadRequestError) as caught:
        _client(gw.url).chat.completions.create(model="m", messages=[])
    assert caught.value.body["param"] == "messages"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        _client(gw.url).chat.completions.create(model="m", messages=MESSAGES, temperature=9)
    assert caught.value.body["param"] == "temperature"  # type: ignore[index]


def test_unknown_model_is_404(fake, gateway):
    gw = gateway(config_for({"p": fake().url}))
    with pytest.raises(openai.NotFoundError) as caught:
        _client(gw.url).chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert caught.value.code == "model_not_found"


def test_oversized_body_is_413_without_reaching_upstream(fake, gateway):
    upstream = fake()
    gw = gateway(config_for({"p": upstream.url}), max_body_bytes=2048)
    big = [{"role": "user", "content": "x" * 5000}]
    with pytest.raises(openai.APIStatusError) as caught:
        _client(gw.url).chat.completions.create(model="m", messages=big)
    assert caught.value.status_code == 413
    assert caught.value.code == "request_too_large"
    # Chunked upload without Content-Length is cut off while reading, too.
    chunks = iter([b'{"model": "m", "messages": [', b"x" * 4096, b"]}"])
    response = httpx.post(f"{gw.url}/v1/chat/completions", content=chunks, timeout=10)
    _assert_envelope(response, 413)
    assert upstream.sim.requests == []


def test_admin_key_required_when_set(fake, gateway):
    gw = gateway(config_for({"p": fake().url}), admin_key="sk-admin-secret")
    with pytest.raises(openai.AuthenticationError):
        _client(gw.url, key="wrong").chat.completions.create(model="m", messages=MESSAGES)
    response = httpx.get(f"{gw.url}/v1/models", timeout=10)
    assert _assert_envelope(response, 401)["code"] == "missing_api_key"
    answer = _client(gw.url, key="sk-admin-secret").chat.completions.create(model="m", messages=MESSAGES)
    assert answer.choices[0].message.content


def test_upstream_500_is_502_naming_provider_never_key(fake, gateway, monkeypatch):
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-upstream-very-secret")
    upstream = fake(behaviour=Behaviour(status=500))
    gw = gateway(config_for({"acme": upstream.url}, acme={"api_key_env": "FAKE_PROVIDER_KEY"}))
    with pytest.raises(openai.InternalServerError) as caught:
        _client(gw.url).chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert "acme" in caught.value.message
    assert "sk-upstream-very-secret" not in caught.value.response.text
    assert upstream.sim.requests[-1].headers["authorization"] == "Bearer sk-upstream-very-secret"


def test_upstream_401_means_gateway_misconfigured_not_client(fake, gateway):
    upstream = fake(behaviour=Behaviour(status=401))
    gw = gateway(config_for({"acme": upstream.url}))
    with pytest.raises(openai.InternalServerError) as caught:
        _client(gw.url).chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.status_code == 502


def test_upstream_client_error_goes_back_as_is(fake, gateway):
    upstream = fake(behaviour=Behaviour(status=400, error_message="unsupported value for logit_bias"))
    gw = gateway(config_for({"acme": upstream.url}))
    with pytest.raises(openai.BadRequestError) as caught:
        _client(gw.url).chat.completions.create(model="m", messages=MESSAGES)
    assert "unsupported value for logit_bias" in caught.value.message


def test_context_length_error_with_no_longer_window_is_502(fake, gateway):
    upstream = fake(behaviour=Behaviour(status=400, error_message=CONTEXT_LENGTH_MESSAGE))
    gw = gateway(config_for({"acme": upstream.url}))
    with pytest.raises(openai.APIStatusError) as caught:
        _client(gw.url).chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert "context" in caught.value.message


def test_garbage_from_upstream_is_502(fake, gateway):
    gw = gateway(config_for({"acme": fake(behaviour=Behaviour(garbage=True)).url}))
    with pytest.raises(openai.InternalServerError) as caught:
        _client(gw.url).chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert "not JSON" in caught.value.message


def test_first_byte_timeout_is_504(fake, gateway):
    upstream = fake(behaviour=Behaviour(first_byte_ms=3000))
    gw = gateway(config_for({"slow": upstream.url}, slow={"first_byte_timeout_ms": 200}))
    with pytest.raises(openai.InternalServerError) as caught:
        _client(gw.url).chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.status_code == 504


def test_rate_limited_everywhere_is_503_with_retry_after(fake, gateway):
    upstream = fake(behaviour=Behaviour(status=429, retry_after_s=7))
    gw = gateway(config_for({"busy": upstream.url}))
    response = httpx.post(
        f"{gw.url}/v1/chat/completions", json={"model": "m", "messages": MESSAGES}, timeout=10
    )
    error = _assert_envelope(response, 503)
    assert error["code"] == "upstream_rate_limited"
    assert response.headers["retry-after"] == "7"


def test_stream_that_fails_fast_gets_a_real_status(fake, gateway):
    gw = gateway(config_for({"acme": fake(behaviour=Behaviour(status=500)).url}))
    with pytest.raises(openai.InternalServerError):
        _client(gw.url).chat.completions.create(model="m", messages=MESSAGES, stream=True)


def test_unknown_route_and_method(fake, gateway):
    gw = gateway(config_for({"p": fake().url}))
    _assert_envelope(httpx.get(f"{gw.url}/v1/nothing-here", timeout=10), 404)
    _assert_envelope(httpx.get(f"{gw.url}/v1/chat/completions", timeout=10), 405)


@pytest.mark.parametrize(
    ("behaviour", "status"),
    [
        (Behaviour(status=429, retry_after_s=7), 503),
        (Behaviour(status=400, error_message="bad logit_bias"), 400),
    ],
    ids=["all-rate-limited", "client-error-passthrough"],
)
def test_failed_request_is_booked_with_the_status_the_client_got(fake, gateway, behaviour, status):
    gw = gateway(config_for({"acme": fake(behaviour=behaviour).url}))
    response = httpx.post(
        f"{gw.url}/v1/chat/completions", json={"model": "m", "messages": MESSAGES}, timeout=10
    )
    assert response.status_code == status
    record = httpx.get(f"{gw.url}/v1/generation", params={"id": response.headers["x-request-id"]}, timeout=5)
    assert record.json()["data"]["status"] == status
