"""`/openapi.json` and `/docs`: the API description, and Swagger UI rendering it.

Swagger UI's files come from the `fastapi-offline` package (a PyPI wheel that ships
Swagger UI 5, which renders OpenAPI 3.1), so the page works offline and loads nothing
from another host. The page and its starter script are static files beside this
module: no inline script, so the dashboard's content security policy applies as it is.

Neither needs a key: the description is the same for every gateway (no model names,
keys or prices in it, only the API's shape, like a provider's published spec), and
tools that generate clients or fuzz the API fetch it before they have a key. Trying a
request from the page needs a key like any other request. The browser guard still
applies (Host allow-list on an open gateway).
"""

from __future__ import annotations

import asyncio
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import fastapi_offline
import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.dashboard.pages import HEADERS

HERE = Path(__file__).parent / "static"
SWAGGER_DIR = Path(fastapi_offline.__file__).parent / "static"
TITLE = "LLM gateway"
DESCRIPTION = (
    "An OpenAI-compatible gateway that routes each request to the best deployment of a model "
    "(price, latency, load, health), fails over, and books the cost.\n\n"
    'Errors use OpenAI\'s envelope `{"error": {"message", "type", "code", "param"}}` '
    "(Anthropic's on `/v1/messages`). A gateway started without an admin key is open (loopback only): "
    "then no key is needed."
)


@cache
def openapi_json() -> bytes:
    """The description, generated once per process from the stubs in `operations`.

    Imported here, not at the top: declaring the stubs costs FastAPI a few hundred
    milliseconds, which a gateway that is never asked for its description need not pay
    at start-up."""
    from fastapi.openapi.utils import get_openapi

    from gateway.api_schema.operations import ROUTERS

    routes = [route for router in ROUTERS for route in router.routes]
    document = get_openapi(
        title=TITLE,
        version=version("llm-gateway"),
        description=DESCRIPTION,
        routes=routes,
        tags=[
            {"name": "OpenAI-compatible", "description": "The client API: a virtual key"},
            {"name": "Admin", "description": "Keys, spend, the ledger and RAG: the admin key"},
            {"name": "Operations", "description": "Health, readiness and metrics"},
        ],
    )
    _errors_as_json(document)
    return orjson.dumps(document)


def _errors_as_json(document: dict[str, Any]) -> None:
    """Error responses are JSON on every operation, also where success is text (CSV, metrics).

    FastAPI gives an operation's extra responses its success media type; this moves each
    error schema to `application/json`, which is what the client gets.
    """
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content")
                if status[0] in "45" and content and "application/json" not in content:
                    response["content"] = {"application/json": next(iter(content.values()))}


async def openapi(request: Request) -> Response:
    # Built on first use (a second of CPU), in a thread so requests in flight are not held up.
    return Response(await asyncio.to_thread(openapi_json), media_type="application/json")


async def docs_page(request: Request) -> Response:
    return FileResponse(HERE / "docs.html", media_type="text/html; charset=utf-8", headers=HEADERS)


async def docs_script(request: Request) -> Response:
    return FileResponse(HERE / "docs.js", media_type="text/javascript", headers=HEADERS)


def docs_routes() -> list[BaseRoute]:
    return [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs_page, methods=["GET"]),
        Route("/docs/docs.js", docs_script, methods=["GET"]),
        Mount("/docs/assets", StaticFiles(directory=str(SWAGGER_DIR)), name="docs-assets"),
    ]
