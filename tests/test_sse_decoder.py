"""The incremental SSE decoder: any split of bytes, any line ending."""

from __future__ import annotations

import pytest

from providers.sse import SSEDecoder

STREAM = (
    ": a comment\n"
    'data: {"a": 1}\n\n'
    "event: ping\ndata: x\n\n"
    "data: line one\ndata: line two\n\n"
    "id: 7\nretry: 1500\ndata: ünïcødé ✓\n\n"
    "data:no-space\n\n"
    "data: [DONE]\n\n"
)
EXPECTED = [
    ('{"a": 1}', None),
    ("x", "ping"),
    ("line one\nline two", None),
    ("ünïcødé ✓", None),
    ("no-space", None),
    ("[DONE]", None),
]


def _decode(pieces: list[bytes]) -> list[tuple[str, str | None]]:
    decoder = SSEDecoder()
    events = []
    for piece in pieces:
        events += [(e.data, e.event) for e in decoder.feed(piece)]
    return events


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_every_split_point_gives_the_same_events(ending):
    raw = STREAM.replace("\n", ending).encode()
    assert _decode([raw]) == EXPECTED
    for cut in range(1, len(raw)):
        assert _decode([raw[:cut], raw[cut:]]) == EXPECTED, f"split at byte {cut}"


def test_byte_at_a_time_with_crlf_split_between_reads():
    raw = STREAM.replace("\n", "\r\n").encode()
    assert _decode([bytes([b]) for b in raw]) == EXPECTED


def test_id_and_retry_fields():
    decoder = SSEDecoder()
    (event,) = decoder.feed(b"id: 42\nretry: 3000\ndata: hi\n\n")
    assert (event.id, event.retry, event.data) == ("42", 3000, "hi")


def test_unterminated_final_event_is_not_dispatched():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: partial") == []
    assert decoder.flush() == []
