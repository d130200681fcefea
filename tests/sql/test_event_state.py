"""call_events.applied_at: stamped when an event becomes applied, and at no other state."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ingest import queries
from ingest.patch import Patch, Source

Conn = psycopg.Connection[tuple[Any, ...]]

ASSISTANT = "0f6d7a64-1a7c-4b8e-9c55-3e2f1d0c9b8a"


def record_and_apply(conn: Conn, key: str, patch: Patch | None) -> tuple[Any, ...]:
    row = conn.execute(
        queries.RECORD_AND_APPLY,
        {
            "received_at": "2026-03-01T01:00:00Z",
            "call_id": patch.call_id if patch else None,
            "session_id": None,
            "message_type": "status-update",
            "dedupe_key": key,
            "message": Jsonb({"type": "status-update"}),
            "body": None,
            "final_transcript": False,
            "status": None,
            "event_at": None,
            "patch": patch.to_json().decode() if patch else None,
        },
    ).fetchone()
    assert row is not None
    return tuple(row)


def applied_at(conn: Conn, event_id: int) -> tuple[Any, ...]:
    row = conn.execute("SELECT state, applied_at IS NOT NULL FROM call_events WHERE id = %s", (event_id,)).fetchone()
    assert row is not None
    return tuple(row)


def test_waiting_event_has_no_applied_at(db: Conn) -> None:
    """An event whose row cannot exist yet is left waiting with applied_at NULL, then stamped once applied."""
    call_id = str(uuid.uuid4())
    waiting = Patch(call_id=call_id).with_value("ended_reason", "hangup", Source.STATUS)
    event_id, state, *_ = record_and_apply(db, "k-waiting", waiting)
    assert state == "waiting"
    assert applied_at(db, event_id) == ("waiting", False)
    # Re-delivered after its row exists: the same event becomes applied, and only now stamped.
    record_and_apply(db, "k-creator", Patch(call_id=call_id).with_value("assistant_id", ASSISTANT, Source.CALL))
    assert record_and_apply(db, "k-waiting", waiting)[1] == "applied"
    assert applied_at(db, event_id) == ("applied", True)


def test_ignored_event_has_no_applied_at(db: Conn) -> None:
    """An event recorded without a patch (a type we do not map) is ignored, not applied."""
    event_id, state, *_ = record_and_apply(db, "k-ignored", None)
    assert (state, applied_at(db, event_id)) == ("ignored", ("ignored", False))


def test_set_event_state_clears_applied_at_unless_applied(db: Conn) -> None:
    """SET_EVENT_STATE stamps applied_at for 'applied' and clears it for any other state."""
    call_id = str(uuid.uuid4())
    event_id = record_and_apply(db, "k-set", Patch(call_id=call_id).with_value("assistant_id", ASSISTANT, Source.CALL))[
        0
    ]
    assert applied_at(db, event_id) == ("applied", True)
    db.execute(queries.SET_EVENT_STATE, {"id": event_id, "state": "waiting", "error": None})
    assert applied_at(db, event_id) == ("waiting", False)
    db.execute(queries.SET_EVENT_STATE, {"id": event_id, "state": "applied", "error": None})
    assert applied_at(db, event_id) == ("applied", True)
