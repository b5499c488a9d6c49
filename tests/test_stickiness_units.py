"""Prompt-cache stickiness on its own: which prompts get a prefix key and what it covers, and the
bounded table of who served a prefix last (expiry, newer-wins, oldest evicted first)."""

from __future__ import annotations

import hashlib

from router_policies.stickiness import (
    MAX_ENTRIES,
    MIN_PROMPT_CHARS,
    PREFIX_CHARS,
    STICKY_TTL_S,
    StickyTable,
    prefix_key,
)


def text_of(n: int, char: str = "a") -> str:
    return char * n


def test_the_key_is_the_hash_of_key_name_and_the_first_prefix_chars_of_role_and_text():
    content = text_of(PREFIX_CHARS + 100)
    messages = [{"role": "system", "content": content}]
    prefix = f"system\x1f{content}\x1e"[:PREFIX_CHARS]
    expected = hashlib.blake2b(f"k\x00{prefix}".encode(), digest_size=12).hexdigest()
    assert prefix_key("k", messages) == expected
    no_key = hashlib.blake2b(f"\x00{prefix}".encode(), digest_size=12).hexdigest()
    assert prefix_key(None, messages) == no_key
    assert len(expected) == 24
    half = text_of(PREFIX_CHARS // 2)
    two = [{"role": "system", "content": half}, {"role": "user", "content": half}]
    joined = f"system\x1f{half}\x1euser\x1f{half}\x1e"[:PREFIX_CHARS]
    assert prefix_key("k", two) == hashlib.blake2b(f"k\x00{joined}".encode(), digest_size=12).hexdigest()


def test_short_messages_count_together_towards_the_minimum():
    third = text_of(MIN_PROMPT_CHARS // 3)
    three = [{"role": "user", "content": third}] * 3 + [{"role": "user", "content": "x"}]
    assert prefix_key("k", three) is not None
    assert prefix_key("k", three[:2]) is None


def test_a_prompt_just_long_enough_gets_a_key_one_character_shorter_none():
    overhead = len("user\x1f\x1e")
    assert prefix_key("k", [{"role": "user", "content": text_of(MIN_PROMPT_CHARS - overhead)}]) is not None
    assert prefix_key("k", [{"role": "user", "content": text_of(MIN_PROMPT_CHARS - overhead - 1)}]) is None


def test_what_follows_the_prefix_does_not_change_the_key_but_what_is_in_it_does():
    head = [{"role": "system", "content": text_of(PREFIX_CHARS)}]
    key = prefix_key("k", [*head, {"role": "user", "content": "one"}])
    assert key == prefix_key("k", [*head, {"role": "user", "content": "two"}])
    assert key == prefix_key("k", head)
    assert key != prefix_key("k", [{"role": "user", "content": text_of(PREFIX_CHARS)}])  # the role counts
    short = [{"role": "system", "content": text_of(MIN_PROMPT_CHARS // 2)}]
    a = prefix_key("k", [*short, {"role": "user", "content": text_of(MIN_PROMPT_CHARS, "b")}])
    b = prefix_key("k", [*short, {"role": "user", "content": text_of(MIN_PROMPT_CHARS, "c")}])
    assert a is not None and b is not None and a != b  # the second message is inside the prefix


def test_content_parts_count_their_text_and_nothing_else():
    long = text_of(MIN_PROMPT_CHARS)
    as_string = prefix_key("k", [{"role": "user", "content": "xy" + long}])
    as_parts = prefix_key(
        "k",
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "x"},
                    {"type": "image_url", "image_url": {"url": "data:"}},
                    {"type": "text", "text": 3},
                    "stray",
                    {"type": "text", "text": "y"},
                    {"type": "text", "text": long},
                ],
            }
        ],
    )
    assert as_parts == as_string
    assert prefix_key("k", [{"role": "user", "content": {"text": long}}]) is None
    # content that is neither text nor parts counts as empty
    other = [{"role": "user", "content": None}, {"role": "user", "content": long}]
    empty = [{"role": "user", "content": ""}, {"role": "user", "content": long}]
    assert prefix_key("k", other) == prefix_key("k", empty)


def test_non_list_messages_and_non_dict_entries_are_skipped():
    long = text_of(MIN_PROMPT_CHARS)
    assert prefix_key("k", "not a list") is None
    assert prefix_key("k", None) is None
    with_junk = prefix_key("k", ["junk", {"role": "user", "content": long}, 3])
    assert with_junk == prefix_key("k", [{"role": "user", "content": long}])


def test_a_remembered_deployment_is_returned_until_the_ttl_passes():
    table = StickyTable()
    assert table.ttl_s == STICKY_TTL_S
    assert table.get("p", 0.0) is None
    table.put("p", "groq/llama", 100.0)
    assert table.get("p", 100.0) == "groq/llama"
    assert table.get("p", 100.0 + STICKY_TTL_S) == "groq/llama"  # at the TTL: still warm
    assert table.get("p", 100.0 + STICKY_TTL_S + 0.01) is None
    short = StickyTable(ttl_s=5.0)
    short.put("p", "d", 0.0)
    assert short.get("p", 5.0) == "d" and short.get("p", 5.5) is None


def test_a_newer_answer_wins_an_older_one_is_ignored():
    table = StickyTable()
    table.put("p", "first", 10.0)
    table.put("p", "older", 9.0)
    assert table.get("p", 10.0) == "first"
    table.put("p", "same-time", 10.0)
    assert table.get("p", 10.0) == "same-time"
    table.put("p", "newer", 11.0)
    assert table.get("p", 11.0) == "newer" and len(table) == 1


def test_the_table_is_bounded_and_evicts_the_least_recently_put():
    table = StickyTable()
    table.put("first", "d0", 0.0)
    table.put("second", "d1", 1.0)
    for i in range(MAX_ENTRIES - 2):
        table.put(f"k{i}", "d", 2.0)
    table.put("first", "d0-again", 3.0)  # refreshed: now the most recent
    assert len(table) == MAX_ENTRIES
    table.put("one-more", "d", 4.0)
    assert len(table) == MAX_ENTRIES
    assert table.get("second", 4.0) is None  # the least recently put went
    assert table.get("first", 4.0) == "d0-again" and table.get("one-more", 4.0) == "d"
    table.put("another", "d", 5.0)
    assert table.get("k0", 5.0) is None and table.get("k1", 5.0) == "d"
