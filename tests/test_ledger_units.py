"""The ledger's read side and spool files on their own: every report function called directly on
one real SQLite ledger (booked once for the module, the way the writer books it) and compared
with the same figures worked out from the rows; how a range is cut into roll-up and raw pieces;
keyset paging; and the spool's files, locks and torn lines.

test_ledger_rollup.py asks the same reports over HTTP on SQLite and PostgreSQL; this module
answers in about a second, so it can judge each mutant of gateway/ledger/.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from gateway.db import make_engine
from gateway.db.rollup import DAY, HOUR, hour_of, hour_start
from gateway.ledger.aggregates import (
    cache_savings,
    deployment_stats,
    error_rate,
    key_usage,
    model_tokens,
    percentile,
    totals,
)
from gateway.ledger.queries import iso, key_spend, ledger_page, spend, utc
from gateway.ledger.rollups import blank, pieces, slot_name
from gateway.ledger.spool import Spool
from tests.harness import database_url
from tests.ledger_seed import row
from tests.test_ledger_rollup import (
    RANGES,
    at,
    book,
    check_deployments,
    chosen,
    expected_spend,
    expected_summary,
    is_refused,
    random_rows,
    slot,
)

# --------------------------------------------------------------------------- one booked ledger


@pytest.fixture(scope="module")
def booked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[dict[str, Any]], list[str]]]:
    url, drop = database_url("sqlite", tmp_path_factory.mktemp("ledger"))
    data = random_rows([0, 1, None], n=700, seed=3)
    ids = book(url, data)
    yield url, data, ids
    drop()


@pytest_asyncio.fixture(loop_scope="function")
async def engine(booked: tuple[str, list[dict[str, Any]], list[str]]) -> AsyncIterator[Any]:
    made = make_engine(booked[0])
    try:
        yield made
    finally:
        await made.dispose()


def filter_sets(ids: list[str]) -> list[dict[str, str]]:
    a, b = ids
    return [{}, {"key": a}, {"model": "m2"}, {"provider": "p1", "key": b}]


def dims(filters: dict[str, str]) -> dict[str, str]:
    return {("key_id" if k == "key" else k): v for k, v in filters.items()}


Case = tuple[datetime, datetime, dict[str, str], list[dict[str, Any]]]


def cases(
    booked: tuple[str, list[dict[str, Any]], list[str]], ranges: int | None = None, filters: int | None = None
) -> Iterator[Case]:
    """Each range and filter set a report is asked for, with the booked rows it should count."""
    _, data, ids = booked
    for start, end in RANGES[:ranges]:
        for chosen_filters in filter_sets(ids)[:filters]:
            yield start, end, chosen_filters, chosen(data, start, end, chosen_filters)


async def test_totals_equal_a_scan_of_the_rows(booked, engine):
    for start, end, filters, rows in cases(booked):
        got = await totals(engine, start, end, dims(filters))
        assert got == expected_summary(rows), (start, end, filters)
    empty = await totals(engine, at("2030-01-01T00:00:00"), at("2030-01-02T00:00:00"), {})
    assert empty == {
        "requests": 0,
        "refused": 0,
        "errors": 0,
        "error_rate": None,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
        "streamed": 0,
        "cancelled": 0,
        "rag_requests": 0,
    }


async def test_spend_by_group_and_bucket_equals_a_scan_of_the_rows(booked, engine):
    ids = booked[2]
    names = {ids[0]: "a", ids[1]: "b"}
    for start, end, filters, rows in cases(booked):
        for group, bucket in (("provider", "hour"), ("key", "day"), ("deployment", "day"), ("model", "hour")):
            got = await spend(engine, group, bucket, start, end, dims(filters))
            want = expected_spend(rows, group, bucket, names)
            assert [tuple(r.values()) for r in got] == want, (start, end, filters, group)
    naive = await spend(
        engine, "model", "day", RANGES[0][0].replace(tzinfo=None), RANGES[0][1].replace(tzinfo=None)
    )
    assert naive == await spend(engine, "model", "day", *RANGES[0])


async def test_key_usage_counts_requests_spend_and_refusals_by_status(booked, engine):
    for start, end, filters, rows in cases(booked):
        usage = await key_usage(engine, start, end, dims(filters))
        expected = {}
        for key_id in {r["key_id"] for r in rows}:
            mine = [r for r in rows if r["key_id"] == key_id]
            expected[key_id] = {
                "requests": len(mine),
                "cost_usd": pytest.approx(sum(r["cost_usd"] for r in mine), abs=1e-9),
                "refused": {
                    str(s): sum(1 for r in mine if is_refused(r) and r["status"] == s)
                    for s in (402, 403, 429)
                },
            }
        assert usage == expected, (start, end, filters)


async def test_deployment_stats_count_errors_percentiles_and_output_rate(booked, engine):
    for start, end, filters, rows in cases(booked):
        stats = await deployment_stats(engine, start, end, dims(filters))
        check_deployments([{"deployment": d, **s} for d, s in stats.items()], rows)
        for deployment, s in stats.items():
            mine = [r for r in rows if r["deployment"] == deployment]
            errors = sum(1 for r in mine if r["status"] >= 400 and not is_refused(r))
            assert s["error_rate"] == (round(errors / len(mine), 6) if mine else None)
            ok = [r for r in mine if r["status"] < 400]
            tokens = sum(r["output_tokens"] for r in ok)
            generating = sum(generating_ms(r) for r in ok)
            if generating:
                assert s["tokens_per_s"] == pytest.approx(round(tokens / (generating / 1000), 3), abs=1e-3)
            else:
                assert s["tokens_per_s"] is None


def generating_ms(r: dict[str, Any]) -> float:
    if r["output_tokens"] <= 0:
        return 0.0
    after_first = r["latency_ms"] - (r["ttft_ms"] or 0.0)
    return after_first if after_first > 0 else r["latency_ms"]


async def test_model_tokens_and_cache_savings_per_slot(booked, engine):
    for start, end, filters, rows in cases(booked, ranges=3, filters=2):
        for bucket in ("hour", "day"):
            sums: dict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [0, 0, 0.0])
            hits: dict[str, list[Any]] = defaultdict(lambda: [0, 0.0])
            for r in rows:
                if r["status"] < 400 and r["deployment"]:
                    s = sums[(slot(r["created_at"], bucket), r["model"], r["deployment"])]
                    s[0], s[1], s[2] = (
                        s[0] + r["input_tokens"],
                        s[1] + r["output_tokens"],
                        s[2] + r["cost_usd"],
                    )
                if r["status"] < 400 and r["cache"] in ("hit", "semantic-hit"):
                    h = hits[slot(r["created_at"], bucket)]
                    h[0], h[1] = h[0] + 1, h[1] + r["cost_saved_usd"]
            got = await model_tokens(engine, bucket, start, end, dims(filters))
            assert got == [
                (*k, v[0], v[1], pytest.approx(v[2], abs=1e-9)) for k, v in sorted(sums.items())
            ], (start, end, filters, bucket)
            saved = await cache_savings(engine, bucket, start, end, dims(filters))
            assert saved == [(k, v[0], pytest.approx(v[1], abs=1e-9)) for k, v in sorted(hits.items())]


async def test_key_spend_sums_a_keys_cost_since_a_time(booked, engine):
    _, data, ids = booked
    for key_id in (*ids, "no-such-key"):
        for since in (
            RANGES[1][0],
            at("2025-03-03T00:00:00"),
            at("2025-03-03T07:30:00"),
            at("2030-01-01T00:00:00"),
        ):
            spent = sum(r["cost_usd"] for r in data if r["key_id"] == key_id and r["created_at"] >= since)
            assert await key_spend(engine, key_id, since) == pytest.approx(spent, abs=1e-9)


async def test_ledger_pages_newest_first_with_a_cursor_that_continues_exactly(booked, engine):
    _, data, ids = booked
    start, end = RANGES[1]
    for filters, where in (
        ({}, {}),
        ({"key": ids[0]}, {"key_id": ids[0]}),
        ({"model": "m2"}, {"model": "m2"}),
    ):
        want = sorted(
            chosen(data, start, end, filters), key=lambda r: (r["created_at"], r["request_id"]), reverse=True
        )
        got: list[dict[str, Any]] = []
        cursor = None
        for _ in range(len(want) // 25 + 2):  # bounded: one page more than needed
            page = await ledger_page(engine, where, start, end, 25, cursor)
            assert len(page["data"]) <= 25
            got.extend(page["data"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert cursor is None
        assert [r["request_id"] for r in got] == [r["request_id"] for r in want]
    first = (await ledger_page(engine, {}, None, None, 1, None))["data"][0]
    newest = max(data, key=lambda r: (r["created_at"], r["request_id"]))
    assert first["request_id"] == newest["request_id"]
    assert first["created_at"] == newest["created_at"].isoformat().replace("+00:00", "Z")
    assert first["cost_usd"] == pytest.approx(newest["cost_usd"])
    exact = await ledger_page(engine, {}, start, end, len(chosen(data, start, end, {})), None)
    assert exact["next_cursor"] is None  # exactly one full page: nothing after it


async def test_rows_sharing_a_timestamp_are_paged_by_request_id(tmp_path: Path):
    url, drop = database_url("sqlite", tmp_path)
    try:
        when = at("2025-03-02T10:00:00")
        data = [row(f"same-{i}", when, None, "p1/m1-up") for i in range(5)]
        data += [row("later", when + timedelta(seconds=1), None, "p1/m1-up")]
        await asyncio.to_thread(book, url, data)
        engine = make_engine(url)
        try:
            ids, cursor = [], None
            for _ in range(5):
                page = await ledger_page(engine, {}, None, None, 2, cursor)
                ids += [r["request_id"] for r in page["data"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert ids == ["later", "same-4", "same-3", "same-2", "same-1", "same-0"]
        finally:
            await engine.dispose()
    finally:
        drop()


# --------------------------------------------------------------------------- pure parts


def hours(start: datetime, end: datetime | None) -> tuple[list[tuple[datetime, datetime]], set[int]]:
    """What `pieces` covers: raw intervals, and every hour the roll-ups cover (expanded)."""
    cut = pieces(start, end)
    covered: set[int] = set()
    for grain, h0, h1 in cut.rolled:
        assert grain in (HOUR, DAY)
        if grain == DAY:
            assert h0 % DAY == 0 and h1 % DAY == 0
        new = set(range(h0, h1))
        assert not covered & new
        covered |= new
    return [(a, b) for a, b, _ in cut.raw], covered


@pytest.mark.parametrize(("start", "end"), RANGES)
def test_pieces_cover_a_range_exactly_once(start: datetime, end: datetime):
    raw, rolled = hours(start, end)
    for a, b in raw:  # each raw piece lies inside one hour the roll-ups do not cover
        assert start <= a < b <= end and hour_of(a) == hour_of(b - timedelta(microseconds=1))
        assert hour_of(a) not in rolled
    assert all(start <= hour_start(h) and hour_start(h + 1) <= end for h in rolled)
    raw_s = sum((b - a).total_seconds() for a, b in raw)
    assert raw_s + 3600 * len(rolled) == (end - start).total_seconds()


def test_pieces_use_days_where_whole_days_fit_and_hours_otherwise():
    day = hour_of(at("2025-03-02T00:00:00"))
    cut = pieces(at("2025-03-01T22:30:00"), at("2025-03-04T01:15:00"))
    assert cut.raw == [
        (at("2025-03-01T22:30:00"), at("2025-03-01T23:00:00"), day - 2),
        (at("2025-03-04T01:00:00"), at("2025-03-04T01:15:00"), day + 49),
    ]
    assert cut.rolled == [(HOUR, day - 1, day), (DAY, day, day + 48), (HOUR, day + 48, day + 49)]
    assert pieces(at("2025-03-01T22:30:00"), at("2025-03-04T01:15:00"), days=False).rolled == [
        (HOUR, day - 1, day + 49)
    ]
    inside = pieces(at("2025-03-02T10:05:00"), at("2025-03-02T10:50:00"))
    assert (
        inside.raw == [(at("2025-03-02T10:05:00"), at("2025-03-02T10:50:00"), day + 10)]
        and inside.rolled == []
    )
    on_hours = pieces(at("2025-03-02T10:00:00"), at("2025-03-02T13:00:00"))
    assert on_hours.raw == [] and on_hours.rolled == [(HOUR, day + 10, day + 13)]
    one_day = pieces(at("2025-03-02T00:00:00"), at("2025-03-03T00:00:00"))
    assert one_day.raw == [] and one_day.rolled == [(DAY, day, day + 24)]
    open_end = pieces(at("2025-03-02T10:30:00"), None)
    assert open_end.raw == [(at("2025-03-02T10:30:00"), at("2025-03-02T11:00:00"), day + 10)]
    assert open_end.rolled[0] == (HOUR, day + 11, day + 24) and open_end.rolled[1][:2] == (DAY, day + 24)


def test_percentile_is_the_nearest_rank_of_a_histogram():
    histogram = [(1.0, 2), (5.0, 1), (9.0, 1)]
    assert percentile(histogram, 0.5) == 1.0
    assert percentile(histogram, 0.51) == 5.0
    assert percentile(histogram, 0.75) == 5.0
    assert percentile(histogram, 0.76) == 9.0
    assert percentile(histogram, 1.0) == 9.0
    assert percentile(histogram, 0.0) == 1.0  # at least the first sample
    assert percentile([(3.0, 0), (4.0, 1)], 0.0) == 4.0
    assert percentile([], 0.5) is None and percentile([(1.0, 0)], 0.5) is None
    assert percentile([(1.0, 1), (2.0, 1)], 1.5) == 2.0  # past the end: the last value


def test_error_rate_is_over_requests_not_refused():
    assert error_rate(1, 4, 0) == 0.25
    assert error_rate(1, 4, 1) == round(1 / 3, 6)
    assert error_rate(0, 3, 3) is None and error_rate(0, 0, 0) is None


def test_times_are_utc_and_named_with_a_z():
    naive = datetime(2025, 3, 1, 10, 0)
    assert utc(naive) == datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    plus_two = datetime.fromisoformat("2025-03-01T12:00:00+02:00")
    assert utc(plus_two) == datetime(2025, 3, 1, 10, 0, tzinfo=UTC) and utc(plus_two).tzinfo == UTC
    assert iso(plus_two) == "2025-03-01T10:00:00Z" and iso(None) is None
    assert slot_name(hour_of(at("2025-03-01T10:00:00"))) == "2025-03-01T10:00:00Z"
    assert blank("") is None and blank("groq") == "groq"


# --------------------------------------------------------------------------- the spool


def test_spool_appends_json_lines_and_reads_them_back_skipping_a_torn_line(tmp_path: Path):
    spool = Spool(tmp_path / "spool", "db1")
    spool.append([])
    assert spool.rows_written == 0 and not (tmp_path / "spool").exists()  # nothing to write: no file
    spool.append([{"request_id": "a", "cost_usd": 0.5}, {"request_id": "b"}])
    spool.append([{"request_id": "c"}], sync=True)
    assert spool.rows_written == 3
    files = list((tmp_path / "spool").glob("ledger-db1-*.jsonl"))
    assert len(files) == 1
    assert re.fullmatch(rf"ledger-db1-{os.getpid()}-[0-9a-f]{{8}}\.jsonl", files[0].name)
    with open(files[0], "ab") as f:
        f.write(b'\n{"request_id": "torn in the middle of a character \xc3')
    assert Spool.read(files[0]) == [
        {"request_id": "a", "cost_usd": 0.5},
        {"request_id": "b"},
        {"request_id": "c"},
    ]


def test_a_damaged_line_is_skipped_and_the_lines_after_it_still_read(tmp_path: Path):
    path = tmp_path / "ledger-db1-1-x.jsonl"
    path.write_bytes(b'{"request_id": "a"}\n{"request_id": \n\n{"request_id": "b"}\n')
    assert Spool.read(path) == [{"request_id": "a"}, {"request_id": "b"}]


def test_the_spool_directory_is_made_with_its_parents(tmp_path: Path):
    spool = Spool(tmp_path / "not" / "yet" / "there", "db1")
    spool.append([{"request_id": "a"}])
    assert [Spool.read(p) for p in spool.sealed()] == [[{"request_id": "a"}]]


def test_a_spool_file_is_drainable_only_once_its_writer_closed_it(tmp_path: Path):
    writing = Spool(tmp_path, "db1")
    writing.append([{"request_id": "a"}])
    other = Spool(tmp_path, "db1")
    assert other.sealed() == []  # still locked by `writing`
    assert Spool(tmp_path, "db2").sealed() == []  # another database's files are not ours
    sealed = writing.sealed()
    assert len(sealed) == 1 and Spool.read(sealed[0]) == [{"request_id": "a"}]
    assert other.sealed() == sealed  # an orphan: its writer is gone
    with open(sealed[0], "rb") as held:  # a live writer holding the lock again
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert other.sealed() == []
    assert Spool(tmp_path / "missing", "db1").sealed() == []


def test_truncate_empties_the_journal_but_keeps_its_file_and_lock(tmp_path: Path):
    journal = Spool(tmp_path, "db1")
    journal.truncate()  # nothing yet: nothing to do
    journal.append([{"request_id": "a"}, {"request_id": "b"}])
    journal.truncate()
    assert journal.rows_written == 0
    assert Spool(tmp_path, "db1").sealed() == []  # still ours, still locked
    journal.append([{"request_id": "c"}])
    path = journal.sealed()[0]
    assert Spool.read(path) == [{"request_id": "c"}]


def test_remove_deletes_the_file_and_close_twice_is_harmless(tmp_path: Path):
    journal = Spool(tmp_path, "db1")
    journal.remove()  # never written: nothing to delete
    journal.append([{"request_id": "a"}])
    journal.remove()
    assert list(tmp_path.iterdir()) == []
    journal.close()
    journal.append([{"request_id": "b"}])  # a new file after removal
    journal.close()
    journal.close()
    assert [Spool.read(p) for p in Spool(tmp_path, "db1").sealed()] == [[{"request_id": "b"}]]


def test_sealed_skips_locked_and_vanished_files_and_keeps_looking(tmp_path: Path):
    (tmp_path / "ledger-db1-0-gone.jsonl").symlink_to(tmp_path / "deleted-meanwhile")
    locked = tmp_path / "ledger-db1-1-live.jsonl"
    locked.write_bytes(b'{"request_id": "live"}\n')
    orphan = tmp_path / "ledger-db1-2-dead.jsonl"
    orphan.write_bytes(b'{"request_id": "orphan"}\n')
    with open(locked, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert Spool(tmp_path, "db1").sealed() == [orphan]


def test_a_closed_or_vanished_journal_can_still_be_truncated_and_removed(tmp_path: Path):
    journal = Spool(tmp_path, "db1")
    journal.append([{"request_id": "a"}])
    journal.close()
    journal.truncate()  # closed: its rows are the drain's now, nothing to forget here
    journal.remove()  # closed: nothing of ours left to delete
    assert len(Spool(tmp_path, "db1").sealed()) == 1
    other = Spool(tmp_path / "other", "db1")
    other.append([{"request_id": "b"}])
    for path in (tmp_path / "other").iterdir():
        path.unlink()  # drained and deleted by someone else meanwhile
    other.remove()
