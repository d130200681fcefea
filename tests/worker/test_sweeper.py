"""The sweeper: events left pending or waiting in call_events get applied without the queue."""

from __future__ import annotations

import time
from typing import Any

import orjson
import psycopg
from psycopg_pool import ConnectionPool
from support.apply import PRIVACY, apply_bodies
from support.fixtures import load_call
from support.rows import event_states, rewrite_stored_messages, session_rows

from ingest import queries
from ingest.event import Event
from ingest.vocabulary import EventState
from worker.sweeper import Sweeper, rebuild_missing_transcripts, sweep_once

CALL = "29e81e6b-26b0-4097-8509-32a0d88f1a97"  # the voicemail call


def store_pending(db: psycopg.Connection[Any], bodies: list[bytes], *, enqueued: bool, age_seconds: int) -> None:
    """Rows as the endpoint keeps them when Redis is down, made to look ``age_seconds`` old."""
    rows = [Event.from_body(orjson.loads(raw), 1_790_000_000_000).row(EventState.PENDING, PRIVACY) for raw in bodies]
    for row in rows:
        db.execute(queries.STORE_PENDING_EVENT, row)
    keys = [row["dedupe_key"] for row in rows]
    db.execute("ALTER TABLE call_events DISABLE TRIGGER call_events_touch")  # keep the back-dated updated_at
    db.execute(
        "UPDATE call_events SET enqueued_at = CASE WHEN %s THEN now() END,"
        " updated_at = now() - make_interval(secs => %s) WHERE dedupe_key = ANY(%s)",
        (enqueued, age_seconds, keys),
    )
    db.execute("ALTER TABLE call_events ENABLE TRIGGER call_events_touch")


def test_stale_pending_events_are_applied(db: psycopg.Connection[Any], db_url: str) -> None:
    """Pending events older than the grace period are applied by a sweep, the row built as usual."""
    store_pending(db, load_call("voicemail"), enqueued=True, age_seconds=600)
    with ConnectionPool(db_url, min_size=1, max_size=2) as pool:
        assert sweep_once(pool, PRIVACY, grace=120, unqueued_grace=600) == len(load_call("voicemail"))
    assert event_states(db) == {"applied": len(load_call("voicemail"))}
    assert session_rows(db)[CALL]["ended_reason"] == "voicemail"


def test_recent_and_unqueued_events_are_left_to_the_queue(db: psycopg.Connection[Any], db_url: str) -> None:
    """A pending event inside the grace period, or not yet queued by the drainer, is not swept yet."""
    bodies = load_call("voicemail")
    store_pending(db, bodies[:2], enqueued=True, age_seconds=10)
    store_pending(db, bodies[2:4], enqueued=False, age_seconds=300)
    with ConnectionPool(db_url, min_size=1, max_size=2) as pool:
        assert sweep_once(pool, PRIVACY, grace=120, unqueued_grace=600) == 0
    assert event_states(db) == {"pending": 4}


def test_waiting_events_are_retried(db: psycopg.Connection[Any], db_url: str) -> None:
    """An event that waited for its row is applied by a sweep once some other path created the row."""
    bodies = load_call("assistant_request_first")
    store_pending(db, bodies[:1], enqueued=True, age_seconds=600)
    with ConnectionPool(db_url, min_size=1, max_size=2) as pool:
        sweep_once(pool, PRIVACY, grace=120, unqueued_grace=600)
        assert event_states(db) == {"waiting": 1}
        db.execute(
            "INSERT INTO user_sessions (call_id, assistant_id) VALUES (%s, %s)",
            ("e0b9afa2-56ad-4ccd-8dec-38a1666fb01b", "afe02bab-94fe-4612-ab34-f0fba929f065"),
        )
        db.execute("ALTER TABLE call_events DISABLE TRIGGER call_events_touch")
        db.execute("UPDATE call_events SET updated_at = now() - interval '10 minutes'")
        db.execute("ALTER TABLE call_events ENABLE TRIGGER call_events_touch")
        assert sweep_once(pool, PRIVACY, grace=120, unqueued_grace=600) == 1
    assert event_states(db) == {"applied": 1}


def test_transcript_is_built_when_an_expected_report_never_comes(db: psycopg.Connection[Any], db_url: str) -> None:
    """A call whose assistant expects a report gets no rebuilt transcript at once; the sweeper builds it later."""
    bodies = [b for b in load_call("inbound_booking") if orjson.loads(b)["message"]["type"] != "end-of-call-report"]
    apply_bodies(db, bodies)
    call = "44447e38-9fd3-4025-bc93-2132b1b437d0"
    assert session_rows(db)[call]["call_transcript"] is None  # the report is expected: nothing built yet
    with ConnectionPool(db_url, min_size=1, max_size=2) as pool:
        assert rebuild_missing_transcripts(pool, PRIVACY, grace=10**9) == 0  # ended too recently
        db.execute("UPDATE user_sessions SET ended_at_utc = now() - interval '1 hour' WHERE call_id = %s", (call,))
        assert rebuild_missing_transcripts(pool, PRIVACY, grace=600) == 1
        assert rebuild_missing_transcripts(pool, PRIVACY, grace=600) == 0  # done: not selected again
    row = session_rows(db)[call]
    assert row["call_transcript"].startswith("AI: ")
    assert row["metadata"]["provenance"]["call_transcript"] == "transcripts"


def without_report(call: str) -> list[bytes]:
    return [b for b in load_call(call) if orjson.loads(b)["message"]["type"] != "end-of-call-report"]


def test_call_whose_finals_give_no_transcript_is_tried_once(db: psycopg.Connection[Any], db_url: str) -> None:
    """Finals that give no transcript are tried once, do not hold back the next call, and a newer final is tried."""
    booking, spring = "44447e38-9fd3-4025-bc93-2132b1b437d0", "24685314-2ae7-43a3-9c2f-588cd6fad959"
    apply_bodies(db, without_report("inbound_booking") + without_report("dst_spring"))
    assert {session_rows(db)[call]["call_transcript"] for call in (booking, spring)} == {None}
    # The booking's finals lose their text: nothing can be built from them. It ended first.
    rewrite_stored_messages(db, lambda m: {**m, "transcript": ""}, "call_id = %s AND final_transcript", (booking,))
    db.execute("UPDATE user_sessions SET ended_at_utc = now() - interval '2 hours' WHERE call_id = %s", (booking,))
    db.execute("UPDATE user_sessions SET ended_at_utc = now() - interval '1 hour' WHERE call_id = %s", (spring,))
    with ConnectionPool(db_url, min_size=1, max_size=2) as pool:
        assert rebuild_missing_transcripts(pool, PRIVACY, grace=600, limit=1) == 1  # the booking, to no avail
        assert session_rows(db)[booking]["call_transcript"] is None
        assert (
            rebuild_missing_transcripts(pool, PRIVACY, grace=600, limit=1) == 1
        )  # not the booking again: the next call
        assert session_rows(db)[spring]["call_transcript"].startswith("AI: ")
        assert "transcript_finals_tried" not in session_rows(db)[spring]["metadata"]  # as `ingest rebuild` derives it
        assert rebuild_missing_transcripts(pool, PRIVACY, grace=600, limit=1) == 0
        final = next(b for b in without_report("inbound_booking") if b'"transcriptType":"final"' in b)
        late = orjson.loads(final)
        late["message"]["timestamp"] += 60_000
        late["message"]["transcript"] = "Thanks, bye."
        apply_bodies(db, [orjson.dumps(late)])
        assert rebuild_missing_transcripts(pool, PRIVACY, grace=600, limit=1) == 1  # a newer final: tried again
    assert session_rows(db)[booking]["call_transcript"].endswith(": Thanks, bye.\n")


def test_sweeper_thread_keeps_sweeping_when_redis_is_down(db: psycopg.Connection[Any], db_url: str) -> None:
    """The dead-worker reclaim failing (Redis down) does not stop the database sweep."""
    store_pending(db, load_call("voicemail"), enqueued=True, age_seconds=600)

    def reclaim_fails() -> None:
        raise ConnectionError("redis is down")

    with ConnectionPool(db_url, min_size=1, max_size=2) as pool:
        sweeper = Sweeper(pool, PRIVACY, interval=0.05, grace=120, also=reclaim_fails)
        sweeper.start()
        deadline = time.monotonic() + 20
        while event_states(db).get("pending") and time.monotonic() < deadline:
            time.sleep(0.05)
        sweeper.stop()
    assert event_states(db) == {"applied": len(load_call("voicemail"))}
