"""`/openapi.json` describes every route the gateway serves, with its security; `/docs` renders it offline.

The description comes from stubs (`gateway.api_schema.operations`), not from the served
routes, so the first test holds the two together: a route added without a description,
or a description of a route that is gone, fails here.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.harness import config_for

ADMIN = "admin-secret"
DESCRIBED_PREFIXES = ("/v1/", "/admin/api/")
OPERATIONS = ("/health", "/ready", "/metrics")
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def gw(fake: Any, gateway: Any) -> Any:
    return gateway(config_for({"a": fake().url}), admin_key=ADMIN)


def _served(server: Any) -> set[tuple[str, str]]:
    """(method, path) of every API route the running app serves (HEAD is implied by GET)."""
    app: Any = server._server.config.app
    while not hasattr(app, "routes"):
        app = app.app
    served = set()
    for route in app.routes:
        path = getattr(route, "path", "")
        if path.startswith(DESCRIBED_PREFIXES) or path in OPERATIONS:
            served |= {(m.lower(), path) for m in getattr(route, "methods", ()) if m != "HEAD"}
    return served


def test_every_served_route_is_described_and_nothing_else(gw):
    response = httpx.get(f"{gw.url}/openapi.json", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    described = {(m, path) for path, item in doc["paths"].items() for m in item if m in METHODS}
    assert described == _served(gw)
    for must in ("/v1/chat/completions", "/v1/embeddings", "/v1/models", "/v1/generation", "/v1/responses",
                 "/v1/completions", "/v1/messages", "/admin/api/keys", "/admin/api/ledger.csv",
                 "/admin/api/rag/{collection}/documents", "/admin/api/requests/{request_id}"):  # fmt: skip
        assert must in doc["paths"], must


def test_security_schemes_name_the_keys_each_operation_takes(gw):
    doc = httpx.get(f"{gw.url}/openapi.json", timeout=30).json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["VirtualKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["VirtualKey"]["description"],
    }
    assert schemes["AdminKey"]["type"] == "http" and schemes["AdminKey"]["scheme"] == "bearer"
    assert schemes["AnthropicApiKey"] == {
        **schemes["AnthropicApiKey"],
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
    }
    for path, item in doc["paths"].items():
        for method, op in item.items():
            names = {name for requirement in op.get("security", []) for name in requirement}
            if path.startswith("/admin/api/"):
                assert names == {"AdminKey"}, (method, path)
            elif path.startswith("/v1/"):
                assert {"VirtualKey", "AdminKey"} <= names, (method, path)
            elif path == "/metrics":
                assert names == {"AdminKey", "MetricsToken"}
            else:
                assert not names, (method, path)


def test_bodies_and_errors_are_described(gw):
    doc = httpx.get(f"{gw.url}/openapi.json", timeout=30).json()
    schemas = doc["components"]["schemas"]
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    ref = chat["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert set(schemas[ref.rsplit("/", 1)[1]]["required"]) == {"model", "messages"}
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    for status in ("400", "401", "402", "429", "4XX", "502"):
        assert chat["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorEnvelope"
        }
    messages_error = doc["paths"]["/v1/messages"]["post"]["responses"]["400"]
    assert messages_error["content"]["application/json"]["schema"]["$ref"].endswith("/AnthropicError")
    key = doc["paths"]["/admin/api/keys"]["post"]
    assert (
        "201" in key["responses"]
        and "NewKey" in key["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    )
    spend_params = {p["name"] for p in doc["paths"]["/admin/api/spend"]["get"]["parameters"]}
    assert {"start", "end", "key", "model", "provider", "group_by", "bucket"} <= spend_params


def test_docs_page_and_its_assets_come_from_the_gateway(gw):
    """No key needed (the description is public); the page keeps the strict CSP and loads only local files."""
    page = httpx.get(f"{gw.url}/docs", timeout=30)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(ref.startswith("/") and not ref.startswith("//") for ref in refs), refs
    kinds = {"js": "javascript", "css": "text/css", "png": "image/png"}
    for ref in refs:
        if ref == "/openapi.json":
            continue
        asset = httpx.get(gw.url + ref, timeout=30)
        assert asset.status_code == 200, ref
        assert kinds[ref.rsplit(".", 1)[1]] in asset.headers["content-type"], ref
    script = httpx.get(f"{gw.url}/docs/docs.js", timeout=30).text
    assert 'url: "/openapi.json"' in script and "http" not in script
    bundle = httpx.get(f"{gw.url}/docs/assets/swagger-ui-bundle.js", timeout=30)
    assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text


def test_browser_guard_still_covers_the_docs(fake, gateway):
    """On an open gateway a rebinding page (foreign Host) gets neither the page nor the description."""
    gw = gateway(config_for({"a": fake().url}))
    for path in ("/docs", "/openapi.json"):
        refused = httpx.get(f"{gw.url}{path}", headers={"host": "evil.example"}, timeout=30)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "host_not_allowed"
        assert httpx.get(f"{gw.url}{path}", timeout=30).status_code == 200
