"""An upstream that echoes the request's headers in its errors cannot leak the gateway's
credentials: not to the client (502 or 4xx passthrough, stream or not), not into the
generation record, the ledger's attempt log or a log line."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from gateway.simulator import Behaviour
from providers.redact import Redactor
from tests.harness import config_for, runtime_of, wait_for

ADMIN = "admin-secret-for-scrub-tests"
PROVIDER_KEY = "sk-upstream-" + "9f3a" * 8
HEADER_KEY = "xk-extra-" + "51c7" * 6
SECRETS = (PROVIDER_KEY, HEADER_KEY, ADMIN)
HI = [{"role": "user", "content": "hi"}]


def _start(fake: Any, gateway: Any, tmp_path: Any, monkeypatch: Any, behaviour: Behaviour) -> tuple[Any, Any]:
    monkeypatch.setenv("ECHO_PROVIDER_KEY", PROVIDER_KEY)
    up = fake(behaviour=behaviour)
    extra = {"api_key_env": "ECHO_PROVIDER_KEY", "headers": "{x-api-key: " + HEADER_KEY + "}"}
    gw = gateway(
        config_for({"acme": up.url}, acme=extra),
        admin_key=ADMIN,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/g.db",
        ledger_spool_dir=tmp_path / "spool",
    )
    return gw, up


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text


def _booked_everywhere_clean(gw: Any, request_id: str, kept_message: bool = True) -> None:
    admin = {"authorization": f"Bearer {ADMIN}"}
    record = wait_for(
        lambda: (
            (r := httpx.get(f"{gw.url}/v1/generation", params={"id": request_id}, headers=admin)).status_code
            == 200
            and r.text
        )
    )
    assert "***" in record or not kept_message  # the attempt's message was kept, scrubbed
    _assert_clean(record)

    def ledger_row() -> str | None:
        runtime_of(gw).accounts.ledger._wake.set()
        page = httpx.get(f"{gw.url}/admin/api/ledger", headers=admin).json()["data"]
        rows = [row for row in page if row["request_id"] == request_id]
        return str(rows[0]["attempt_log"]) if rows else None

    attempt_log = wait_for(ledger_row)
    assert "***" in attempt_log or not kept_message
    _assert_clean(attempt_log)


@pytest.mark.parametrize(("status", "client_status"), [(500, 502), (400, 400)])
@pytest.mark.parametrize("stream", [False, True])
def test_echoed_request_headers_are_scrubbed_everywhere(
    status, client_status, stream, fake, gateway, tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.DEBUG)
    gw, up = _start(fake, gateway, tmp_path, monkeypatch, Behaviour(status=status, echo_headers=True))
    response = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": "m", "messages": HI, "stream": stream},
        headers={"authorization": f"Bearer {ADMIN}"},
        timeout=20,
    )
    assert response.status_code == client_status, response.text
    assert up.sim.requests[-1].headers["authorization"] == f"Bearer {PROVIDER_KEY}"  # it was echoed
    _assert_clean(response.text)
    if status == 400:  # the upstream's own message still goes back, minus the credentials
        message = response.json()["error"]["message"]
        assert "Invalid request." in message and "authorization: ***" in message
        assert "x-api-key: ***" in message
    _booked_everywhere_clean(gw, response.headers["x-request-id"])
    _assert_clean(caplog.text)


@pytest.mark.parametrize("after_chunks", [0, 2])
def test_error_event_inside_a_stream_is_scrubbed(after_chunks, fake, gateway, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    leak = f"proxy failure; request was: Authorization: Bearer {PROVIDER_KEY}, x-api-key={HEADER_KEY}"
    behaviour = Behaviour(error_event_after_chunks=after_chunks, error_message=leak, completion_tokens=6)
    gw, _ = _start(fake, gateway, tmp_path, monkeypatch, behaviour)
    response = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": "m", "messages": HI, "stream": True},
        headers={"authorization": f"Bearer {ADMIN}"},
        timeout=20,
    )
    assert "proxy failure" in response.text
    _assert_clean(response.text)
    # Before content the attempt fails over and keeps its message; after, the stream ends with it.
    _booked_everywhere_clean(gw, response.headers["x-request-id"], kept_message=after_chunks == 0)
    _assert_clean(caplog.text)


def test_redactor_masks_configured_secrets_and_credential_header_values():
    redact = Redactor(["sk-configured-secret-1234", None, "short"])
    text = (
        'key sk-configured-secret-1234 {"Authorization": "Bearer abcdefgh12345678", "api-key": "zzzzzzzzzz"} '
        "x-api-key=qqqqqqqqqq proxy-authorization: Basic dXNlcjpwYXNz; bearer tok_123456789 short"
    )
    scrubbed = redact(text)
    for gone in (
        "sk-configured-secret-1234",
        "abcdefgh12345678",
        "zzzzzzzzzz",
        "qqqqqqqqqq",
        "dXNlcjpwYXNz",
        "tok_123456789",
    ):
        assert gone not in scrubbed, scrubbed
    assert scrubbed.endswith("short")  # too short to be a configured secret: ordinary words stay
    assert redact("the api_key parameter is invalid") == "the api_key parameter is invalid"
