"""call_envelopes: kept once per call, read beside its events, gone with them."""

from __future__ import annotations

import os
import uuid
from typing import Any

import orjson
import psycopg
from support.apply import RECEIVED_AT_MS
from support.fixtures import load_call
from support.rows import PRIVACY

from ingest.ops import retention
from ingest.settings import Settings

Connection = psycopg.Connection[Any]


def _record(db: Connection, message: dict[str, Any]) -> int:
    """``message`` recorded as the wired record path will: its envelope kept, then its row."""
    sealed = PRIVACY.seal_event(message)
    assert sealed.envelope is not None
    db.execute(
        "SELECT ingest_keep_call_envelope(%s, %s, %s)",
        (sealed.envelope.call_id, sealed.envelope.id, sealed.envelope.body),
    )
    row = db.execute(
        "INSERT INTO call_events (received_at, call_id, message_type, dedupe_key, body, envelope_id, state)"
        " VALUES (to_timestamp(%s / 1000.0), %s, %s, %s, %s, %s, 'applied') RETURNING id",
        (RECEIVED_AT_MS, sealed.envelope.call_id, message["type"], uuid.uuid4().hex, sealed.body, sealed.envelope.id),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _call(call_id: str) -> list[dict[str, Any]]:
    messages = [orjson.loads(raw)["message"] for raw in load_call("era_sip_call")]
    return [{**m, "call": {**m["call"], "id": call_id}} for m in messages]


def _envelopes(db: Connection) -> int:
    row = db.execute("SELECT count(*) FROM call_envelopes").fetchone()
    return int(row[0]) if row else 0


def test_a_call_keeps_one_envelope_and_every_event_opens_with_it(db: Connection) -> None:
    """Each event's message comes back JSON-equal through ingest_call_envelope; one row per call."""
    messages = _call(str(uuid.uuid4()))
    for message in messages:
        _record(db, message)
    assert _envelopes(db) == 1
    rows = db.execute(
        "SELECT message, body, ingest_call_envelope(call_id, envelope_id) FROM call_events ORDER BY id"
    ).fetchall()
    assert [PRIVACY.open_message(*row) for row in rows] == messages


def test_an_erased_call_keeps_no_envelope(db: Connection) -> None:
    """ingest_keep_call_envelope refuses a call erased on request, and keeps nothing."""
    call_id = str(uuid.uuid4())
    db.execute("INSERT INTO erased_calls (call_id) VALUES (%s)", (call_id,))
    sealed = PRIVACY.seal_event(_call(call_id)[0])
    assert sealed.envelope is not None
    row = db.execute(
        "SELECT ingest_keep_call_envelope(%s, %s, %s)", (call_id, sealed.envelope.id, sealed.envelope.body)
    ).fetchone()
    assert row == (False,)
    assert _envelopes(db) == 0


def test_erasure_removes_the_calls_envelopes(db: Connection) -> None:
    """ingest_erase_events deletes the call's envelopes with its events; another call's stay."""
    erased, kept = str(uuid.uuid4()), str(uuid.uuid4())
    for message in [*_call(erased)[:3], *_call(kept)[:3]]:
        _record(db, message)
    db.execute("SELECT ingest_erase_events(%s, NULL)", (erased,))
    assert db.execute("SELECT call_id::text FROM call_envelopes").fetchall() == [(kept,)]


def test_retention_forgets_envelopes_no_event_refers_to(db: Connection) -> None:
    """Once a call's events are gone, the retention run removes its envelope; a call with events keeps its own."""
    gone, kept = str(uuid.uuid4()), str(uuid.uuid4())
    for message in [*_call(gone)[:2], *_call(kept)[:2]]:
        _record(db, message)
    db.execute("DELETE FROM call_events WHERE call_id = %s", (gone,))
    settings = Settings.from_env({**os.environ, "RETENTION_RAW_EVENTS_DAYS": "3650"})
    retention.run(db, settings)
    assert db.execute("SELECT call_id::text FROM call_envelopes").fetchall() == [(kept,)]
