"""`GET /admin/api/requests/{request_id}`: one request in full, for the dashboard's request view.

The ledger row, its attempts (each deployment tried, its outcome and timing) and, when
prompt monitoring kept it, the stored prompt: the client's messages, the augmented
prompt, the answer, each redacted and capped (`cap_chars`, and `truncated` giving the
original length of every body that was cut). Admin key or dashboard session, like the rest
of the API.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.common import admin_accounts, json_response
from gateway.errors import GatewayError
from gateway.ledger import ledger_page
from gateway.telemetry.prompt_log import prompt_of


async def request_detail(request: Request) -> Response:
    accounts = admin_accounts(request)
    request_id = request.path_params["request_id"]
    page = await ledger_page(accounts.engine, {"request_id": request_id}, None, None, 1, None)
    if not page["data"]:
        raise GatewayError(
            404,
            f"no request {request_id!r} in the ledger (rows are written within a second)",
            code="not_found",
        )
    row = page["data"][0]
    attempts = row.pop("attempt_log", None) or []
    return json_response(
        {**row, "attempts": attempts, "prompt": await prompt_of(accounts.engine, request_id)}
    )
