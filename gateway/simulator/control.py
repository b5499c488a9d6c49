"""The `/_sim/` HTTP control endpoints, for a simulator running in another process.

Mirrors the Python controls so a benchmark driving a separately started
simulator (`python -m gateway.simulator`) can change its behaviour between runs:

- `POST /_sim/behaviour` — JSON object of `Behaviour` fields → the default behaviour.
- `POST /_sim/script` — JSON list of such objects → queued, one per request.
- `POST /_sim/reset` — forget records and script, back to a healthy default.
- `GET /_sim/requests` — `{"count", "bodies", "requests"}` of what was received.
- `GET /_sim/streams` — `{"count", "streams"}` with every `StreamRecord`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import orjson

from gateway.simulator import wire
from gateway.simulator.asgi import ClientGone, Receive, Send, read_body, send_whole
from gateway.simulator.behaviour import Behaviour

if TYPE_CHECKING:
    from gateway.simulator.app import Simulator


async def handle(sim: Simulator, method: str, path: str, receive: Receive, send: Send) -> None:
    try:
        raw = await read_body(receive)
    except ClientGone:
        return
    try:
        payload = _dispatch(sim, method, path, raw)
    except LookupError:
        await _reply(
            send, 404, wire.error_body(f"Unknown control endpoint {method} {path}", "not_found", None)
        )
    except (ValueError, TypeError) as exc:
        await _reply(send, 400, wire.error_body(str(exc), "invalid_request_error", None))
    else:
        await _reply(send, 200, payload)


def _dispatch(sim: Simulator, method: str, path: str, raw: bytes) -> dict[str, Any]:
    if (method, path) == ("POST", "/_sim/behaviour"):
        data = _json(raw, dict)
        sim.behaviour = Behaviour.from_mapping(data)
        return {"behaviour": sim.behaviour.to_dict()}
    if (method, path) == ("POST", "/_sim/script"):
        items = _json(raw, list)
        if not all(isinstance(item, dict) for item in items):
            raise ValueError("the script must be a JSON list of objects")
        sim.script(*(Behaviour.from_mapping(item) for item in items))
        return {"queued": len(items), "pending": sim.pending_script}
    if (method, path) == ("POST", "/_sim/reset"):
        sim.reset()
        return {"reset": True}
    if (method, path) == ("GET", "/_sim/requests"):
        requests = [
            {"method": r.method, "path": r.path, "body": r.body, "received_at": r.received_at}
            for r in list(sim.requests)
        ]
        return {"count": len(requests), "bodies": [r["body"] for r in requests], "requests": requests}
    if (method, path) == ("GET", "/_sim/streams"):
        streams = [dataclasses.asdict(s) for s in list(sim.streams)]
        return {"count": len(streams), "streams": streams}
    raise LookupError(path)


def _json(raw: bytes, kind: type) -> Any:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, kind):
        raise ValueError(f"body must be a JSON {'object' if kind is dict else 'list'}")
    return data


async def _reply(send: Send, status: int, payload: dict[str, Any]) -> None:
    await send_whole(send, status, orjson.dumps(payload))
