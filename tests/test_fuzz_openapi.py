"""The gateway fuzzed against its own `/openapi.json` with schemathesis, as a client key and as the admin.

A fresh gateway (its own SQLite ledger, a fake upstream) serves this module only, so
the admin API's DELETEs and the generated keys touch no other test's fixtures. Every
operation gets a bounded number of generated requests (valid and invalid ones, from the
schema and its examples), sent once with a virtual key and once with the admin key.
Each answer must be: no 5xx, the documented status and content type, a body that
matches the documented schema, and every 4xx in OpenAI's error envelope (Anthropic's
on `/v1/messages`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from gateway.api_schema.docs import openapi_json
from gateway.simulator import Simulator, SimulatorServer
from tests.harness import new_key, start_gateway

ADMIN = "admin-secret-fuzz"
MAX_EXAMPLES = 3
ACCEPTED = ["2XX", 401, 403, 404, 409, 429]  # schemathesis' default for a schema-valid request, less 3xx/5xx
CONFIG = """
providers:
  - name: up
    base_url: {url}
models:
  - name: llama-3.1-8b
    deployments:
      - {{provider: up, model: up-chat, input_price_per_mtok: 1.0, output_price_per_mtok: 2.0}}
  - name: text-embedding
    deployments:
      - {{provider: up, model: up-embed, input_price_per_mtok: 0.1, output_price_per_mtok: 0.0}}
"""


class Target:
    def __init__(self, url: str, virtual_key: str) -> None:
        self.url = url
        self.virtual_key = virtual_key


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    server = SimulatorServer(Simulator("openai"))
    upstream = server.start_in_thread()
    try:
        gw = start_gateway(CONFIG.format(url=upstream), admin_key=ADMIN)
        try:
            yield Target(gw.url, new_key(gw.url, ADMIN, name="fuzz")["key"])
        finally:
            gw.stop()
    finally:
        server.stop()


# The document the gateway serves at /openapi.json (`test_the_fuzzed_document_is_the_served_one`),
# loaded at import so each operation is a test of its own; requests go to `target`.
schema = schemathesis.openapi.from_dict(
    orjson.loads(openapi_json()),
    config=SchemathesisConfig.from_dict(
        {
            "seed": 8,
            "output": {"sanitization": {"enabled": False}},
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "phases": {"stateful": {"enabled": False}},
            # Rules across fields that a JSON schema cannot state, so a schema-valid request
            # may still get a 400 (in the envelope, which every other check still holds):
            "operations": [
                {  # `end` after `start` and at most 400 days later
                    "include-path-regex": "^/admin/api/(spend|summary|savings|deployments|key-usage|ledger\\.csv)$",
                    "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, 400]}},
                },
                {  # at least one of key, group, model, all; not both key and group
                    "include-path": "/admin/api/cache",
                    "include-method": "DELETE",
                    "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, 400]}},
                },
                {  # `cursor` must be one that a previous page returned
                    "include-path": "/admin/api/ledger",
                    "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, 400]}},
                },
                {  # `input` may be omitted only to continue a stored conversation (`previous_response_id`)
                    "include-path": "/v1/responses",
                    "include-method": "POST",
                    "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, 400]}},
                },
            ],
        }
    ),
)


def test_the_fuzzed_document_is_the_served_one(target: Target) -> None:
    assert httpx.get(f"{target.url}/openapi.json", timeout=10).json() == schema.raw_schema


@schemathesis.check
def error_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx is OpenAI's envelope (Anthropic's on /v1/messages), and never a 5xx."""
    if response.status_code < 400:
        return None
    assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    body = response.json()
    if case.path == "/v1/messages":
        assert body["type"] == "error" and isinstance(body["error"]["message"], str), body
    else:
        error = body["error"]
        assert isinstance(error["message"], str) and isinstance(error["type"], str), body
        assert {"code", "param"} <= set(error), body
    return None


_token = [""]  # the key the running test sends


@schema.auth(refresh_interval=None, retry_on=[])
class Key:
    """The key as schemathesis' own auth, so its auth checks know it is real and which header
    to drop when they probe that an operation refuses requests without it (or with a bad one)."""

    def get(self, case: Any, ctx: Any) -> str:
        return _token[0]

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def _fuzz(case: Any, target: Target, token: str) -> None:
    _token[0] = token
    case.call_and_validate(base_url=target.url, additional_checks=[error_envelope], timeout=60)


@schema.exclude(path_regex="^/admin/").parametrize()  # a virtual key gets a 403 there: tested elsewhere
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_with_a_virtual_key(case: Any, target: Target) -> None:
    _fuzz(case, target, target.virtual_key)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_with_the_admin_key(case: Any, target: Target) -> None:
    _fuzz(case, target, ADMIN)
