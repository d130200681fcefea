"""Group commit: concurrent threads' events share commits, and one bad event fails alone."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import psycopg
import pytest
from psycopg_pool import ConnectionPool, PoolClosed
from support.apply import PRIVACY, RECEIVED_AT_MS, queued_body
from support.fixtures import all_calls, fixture_path, iter_bodies, load_event
from support.rows import event_states, session_rows

from ingest.body import loads_storable
from ingest.errors import Unmappable, is_retryable
from ingest.event import Event
from ingest.vocabulary import EventState
from worker.group_commit import GroupCommit, GroupCommitClosed, _Slot

EXPECTED = orjson.loads(fixture_path("expected_rows.json").read_bytes())


def event(raw: bytes) -> Event:
    return Event.from_body(loads_storable(queued_body(raw)), RECEIVED_AT_MS)


def test_threads_sharing_commits_give_the_expected_rows(db: psycopg.Connection[Any], db_url: str) -> None:
    """Eight threads applying every recorded call's events at once end in the expected rows."""
    calls = [[event(raw) for raw in iter_bodies(path)] for path in all_calls()]
    states: list[EventState | None] = []
    with ConnectionPool(db_url, min_size=1, max_size=4) as pool:
        group = GroupCommit(pool, PRIVACY)

        def run(events: list[Event]) -> None:
            for item in events:
                states.append(group.apply(item))

        shares = [[item for call in calls[i::8] for item in call] for i in range(8)]  # a call stays on one thread
        threads = [threading.Thread(target=run, args=(share,)) for share in shares]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        group.close()
    assert len(states) == sum(len(c) for c in calls)
    assert session_rows(db) == EXPECTED["rows"]


def test_a_failing_event_fails_alone(db: psycopg.Connection[Any], db_url: str) -> None:
    """An unmappable event in a batch raises for its own thread; the others in the batch commit."""
    good = [event(raw) for raw in iter_bodies(next(p for p in all_calls() if p.name == "voicemail.jsonl"))]
    bad = event(load_event("status_update_bad_call_id.json"))
    errors: list[BaseException] = []
    with ConnectionPool(db_url, min_size=1, max_size=2) as pool:
        group = GroupCommit(pool, PRIVACY)

        def run(item: Event) -> None:
            try:
                group.apply(item)
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(item,)) for item in [*good, bad]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        group.close()
    assert len(errors) == 1
    assert isinstance(errors[0], Unmappable)
    assert event_states(db) == {"applied": len(good)}


def test_no_connection_fails_the_waiting_thread(db_url: str) -> None:
    """When no connection can be had, the waiting thread gets the error: it is never told its event is safe."""
    with ConnectionPool(db_url, min_size=1, max_size=1) as pool:
        group = GroupCommit(pool, PRIVACY)
        pool.close()
        with pytest.raises(PoolClosed):
            group.apply(event(load_event("transcript_nul_byte.json")))
        group.close()


def test_a_batch_is_applied_without_savepoints_until_an_event_fails(
    db: psycopg.Connection[Any], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batch, deterministic: all good goes through in one pass; a bad event in the middle
    makes the batch run again event by event, and only the bad event gets an error."""
    good = [event(raw) for raw in iter_bodies(next(p for p in all_calls() if p.name == "voicemail.jsonl"))]
    bad = event(load_event("status_update_bad_call_id.json"))
    passes: list[str] = []
    with ConnectionPool(db_url, min_size=1, max_size=1) as pool:
        group = GroupCommit(pool, PRIVACY)
        original_each = GroupCommit._apply_each

        def each(self: GroupCommit, conn: psycopg.Connection[Any], batch: list[_Slot]) -> None:
            passes.append("each")
            original_each(self, conn, batch)

        monkeypatch.setattr(GroupCommit, "_apply_each", each)
        first = [_Slot(item) for item in good[:3]]
        group._commit(first)
        assert passes == []
        assert [slot.error for slot in first] == [None, None, None]

        rest = [_Slot(item) for item in good[3:]]
        mixed = [*rest[: len(rest) // 2], _Slot(bad), *rest[len(rest) // 2 :]]
        group._commit(mixed)
        assert passes == ["each"]
        group.close()
    failed = [slot for slot in mixed if slot.error is not None]
    assert len(failed) == 1
    assert failed[0].event is bad
    assert isinstance(failed[0].error, Unmappable)
    assert all(slot.done.is_set() for slot in [*first, *mixed])
    assert event_states(db) == {"applied": len(good)}
    (key,) = {item.key for item in good}
    assert session_rows(db) == {key: EXPECTED["rows"][key]}


def test_an_event_after_close_gets_a_retryable_error_not_a_hang(db_url: str) -> None:
    """A worker thread that hands over its event while the worker shuts down is told to retry."""
    with ConnectionPool(db_url, min_size=1, max_size=1) as pool:
        group = GroupCommit(pool, PRIVACY)
        group.close()
        with pytest.raises(GroupCommitClosed) as raised:
            group.apply(event(load_event("transcript_nul_byte.json")))
    assert is_retryable(raised.value)
