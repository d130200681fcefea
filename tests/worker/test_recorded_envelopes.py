"""The worker's record paths keep each event's call envelope beside it, and none for an erased call."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import psycopg
from psycopg_pool import ConnectionPool
from support.apply import PRIVACY, RECEIVED_AT_MS, queued_body
from support.fixtures import load_call
from support.rows import stored_messages

from ingest.body import loads_storable
from ingest.event import Event
from ingest.ops import erase
from ingest.settings import Settings
from ingest.vocabulary import EventState
from worker.group_commit import GroupCommit

Conn = psycopg.Connection[Any]
CALLS = ("long_call", "inbound_booking", "voicemail")
BOOKING = "44447e38-9fd3-4025-bc93-2132b1b437d0"


def event(raw: bytes) -> Event:
    return Event.from_body(loads_storable(queued_body(raw)), RECEIVED_AT_MS)


def through_group_commit(db_url: str, calls: list[list[Event]]) -> list[EventState | None]:
    """Each call's events from a thread of its own, so that the committer batches several."""
    states: list[EventState | None] = []
    with ConnectionPool(db_url, min_size=1, max_size=2) as pool:
        group = GroupCommit(pool, PRIVACY)
        threads = [threading.Thread(target=lambda c=c: states.extend(group.apply(e) for e in c)) for c in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        group.close()
    return states


def canonical(messages: list[dict[str, Any]]) -> list[bytes]:
    return sorted(orjson.dumps(m, option=orjson.OPT_SORT_KEYS) for m in messages)


def test_batched_events_keep_their_envelope_and_open_json_equal(db: Conn, db_url: str) -> None:
    """Events recorded by the group commit's batch refer to a kept envelope and open to what was received."""
    calls = [[event(raw) for raw in load_call(name)] for name in CALLS]
    states = through_group_commit(db_url, calls)
    assert None not in states
    rows = db.execute("SELECT substring(body FROM 1 FOR 3), envelope_id IS NOT NULL FROM call_events").fetchall()
    assert len(rows) == sum(len(c) for c in calls)
    assert set(rows) == {(b"v2:", True)}
    unkept = db.execute(
        "SELECT count(*) FROM call_events AS e WHERE NOT EXISTS ("
        " SELECT 1 FROM call_envelopes AS v WHERE v.call_id::text = e.call_id AND v.envelope_id = e.envelope_id)"
    ).fetchone()
    assert unkept == (0,)
    kept = db.execute("SELECT count(DISTINCT call_id), count(*) FROM call_envelopes").fetchone()
    assert kept is not None
    assert kept[0] == len(CALLS)
    assert kept[1] < len(rows) / 4
    assert canonical(stored_messages(db)) == canonical([e.message for c in calls for e in c])


def test_an_erased_call_delivered_again_keeps_no_envelope(db: Conn, db_url: str) -> None:
    """After an erasure a call's envelopes are gone, and its events delivered again keep none."""
    booking = [event(raw) for raw in load_call("inbound_booking")]
    through_group_commit(db_url, [booking])
    assert db.execute("SELECT count(*) FROM call_envelopes WHERE call_id = %s", (BOOKING,)).fetchone() != (0,)
    with db.transaction():
        erase.erase(db, erase.find(db, call=BOOKING), Settings.from_env().require_pseudonym_key())
    assert db.execute("SELECT count(*) FROM call_envelopes").fetchone() == (0,)
    assert through_group_commit(db_url, [booking]) == [EventState.IGNORED] * len(booking)
    assert db.execute("SELECT count(*) FROM call_envelopes").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM call_events WHERE envelope_id IS NOT NULL").fetchone() == (0,)
    assert {m.get("erased") for m in stored_messages(db, "call_id = %s", (BOOKING,))} == {True}
