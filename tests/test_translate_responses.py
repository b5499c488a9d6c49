"""Units: the Responses ↔ Chat Completions translation and the stored-response store."""

from __future__ import annotations

import time

import pytest

from gateway.errors import GatewayError
from gateway.responses_store import MemoryResponseStore, require
from gateway.translate.responses import from_chat, input_messages, output_messages, skeleton, to_chat
from gateway.translate.responses_stream import ResponsesStream


def test_input_items_become_chat_messages():
    messages = input_messages(
        [
            {"role": "developer", "content": "be terse"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": '{"a":1}'},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        ]
    )
    assert messages[0] == {"role": "developer", "content": "be terse"}
    assert messages[1] == {"role": "user", "content": "hi"}  # text-only parts collapse to a string
    assert [c["id"] for c in messages[2]["tool_calls"]] == ["c1", "c2"]  # consecutive calls join
    assert messages[3] == {"role": "tool", "tool_call_id": "c1", "content": "ok"}


def test_request_fields_map_to_chat_fields():
    body = {
        "model": "m",
        "instructions": "sys",
        "max_output_tokens": 7,
        "tool_choice": {"type": "function", "name": "f"},
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "text": {"format": {"type": "json_object"}},
        "store": False,
        "provider": {"sort": "price"},
    }
    chat = to_chat(body, [{"role": "user", "content": "x"}])
    assert chat["messages"][0] == {"role": "system", "content": "sys"}
    assert chat["max_tokens"] == 7 and chat["response_format"] == {"type": "json_object"}
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    ]
    assert "store" not in chat and chat["provider"] == {"sort": "price"}
    with pytest.raises(GatewayError) as bad:
        to_chat({"model": "m", "text": {"format": {"type": "xml"}}}, [])
    assert bad.value.param == "text.format.type"


def test_answer_with_text_and_a_call_and_a_length_cut():
    answer = {
        "model": "m",
        "choices": [
            {
                "message": {
                    "content": "hm",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}],
                },
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "cost": 0.5},
    }
    response = from_chat(answer, {"model": "m"}, "resp_1", 1)
    assert [item["type"] for item in response["output"]] == ["message", "function_call"]
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["usage"]["total_tokens"] == 5 and response["usage"]["cost"] == 0.5
    assert output_messages(response) == [
        {
            "role": "assistant",
            "content": "hm",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        }
    ]


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "provider": "p"}


def test_stream_events_are_numbered_and_close_items_in_order():
    stream = ResponsesStream(skeleton({"model": "m"}, "resp_1", 1, "m"))
    events = stream.start()
    events += stream.chunk(_chunk({"role": "assistant", "content": "a"}))
    events += stream.chunk(_chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]}))
    events += stream.chunk(
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}, "tool_calls")
    )
    events += stream.end()
    assert [p["sequence_number"] for _, p in events] == list(range(len(events)))
    kinds = [k for k, _ in events]
    assert kinds.index("response.output_item.done") < kinds.index("response.function_call_arguments.delta")
    final = events[-1][1]["response"]
    assert final["status"] == "completed" and final["provider"] == "p"
    assert [i["output_index"] for k, i in events if k == "response.output_item.added"] == [0, 1]


def test_stream_error_chunk_fails_the_response():
    stream = ResponsesStream(skeleton({"model": "m"}, "resp_1", 1, "m"))
    stream.start()
    stream.chunk(_chunk({"content": "par"}))
    events = stream.chunk(
        {"error": {"message": "broke"}, "choices": [{"delta": {}, "finish_reason": "error"}]}
    )
    assert [k for k, _ in events] == ["error", "response.failed"]
    response = events[1][1]["response"]
    assert response["error"] == {"code": "server_error", "message": "broke"}
    assert response["output"][0]["status"] == "incomplete"


async def test_store_is_per_owner_bounded_and_expires():
    store = MemoryResponseStore(retention_s=60, capacity=2)
    for n in range(3):
        await store.put("key-a", [], {"id": f"resp_{n}"})
    assert await store.get("key-a", "resp_0") is None  # dropped beyond capacity
    assert await store.get("key-a", "resp_2") is not None
    assert await store.get("key-b", "resp_2") is None  # another key cannot see it
    with pytest.raises(GatewayError) as missing:
        await require(store, "key-b", "resp_2")
    assert missing.value.status == 404
    assert not await store.delete("key-b", "resp_2") and await store.get("key-a", "resp_2") is not None
    expired = MemoryResponseStore(retention_s=60)
    await expired.put("k", [], {"id": "resp_x"})
    expired._entries["resp_x"].expires_at = time.time() - 1
    assert await expired.get("k", "resp_x") is None
