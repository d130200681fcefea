"""call_events, the raw event log: columns, defaults, constraints and the sweeper's index."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[tuple[Any, ...]]


def insert_event(conn: Conn, key: str, **columns: Any) -> tuple[Any, ...]:
    values = {"message_type": "status-update", "dedupe_key": key, "message": Jsonb({"type": "x"}), **columns}
    row = conn.execute(
        f"INSERT INTO call_events ({', '.join(values)}) VALUES ({', '.join(['%s'] * len(values))})"
        " RETURNING id, state, attempts, received_at IS NOT NULL, updated_at IS NOT NULL",
        tuple(values.values()),
    ).fetchone()
    assert row is not None
    return tuple(row)


AGREED_COLUMNS = {
    "id",
    "received_at",
    "call_id",
    "session_id",
    "message_type",
    "dedupe_key",
    "message",
    "state",
    "attempts",
    "last_error",
    "applied_at",
    "updated_at",
}


def test_the_message_is_kept_once_plain_or_sealed(db: Conn) -> None:
    """Exactly one of message (plain) and body (sealed) holds an event's message."""
    insert_event(db, "plain")
    insert_event(db, "sealed", message=None, body=b"v1:k:sealed")
    for key, extra in (("neither", {"message": None}), ("both", {"body": b"v1:k:sealed"})):
        with pytest.raises(psycopg.errors.CheckViolation, match="call_events_one_message"):
            insert_event(db, key, **extra)


def test_columns(db: Conn) -> None:
    """call_events has the agreed columns, types, nullability and defaults (later migrations may add more)."""
    rows = db.execute(
        "SELECT column_name, data_type, is_nullable, column_default, is_identity, identity_generation"
        " FROM information_schema.columns WHERE table_name = 'call_events' ORDER BY ordinal_position"
    ).fetchall()
    assert [row for row in rows if row[0] in AGREED_COLUMNS] == [
        ("id", "bigint", "NO", None, "YES", "ALWAYS"),
        ("received_at", "timestamp with time zone", "NO", "now()", "NO", None),
        ("call_id", "text", "YES", None, "NO", None),
        ("session_id", "text", "YES", None, "NO", None),
        ("message_type", "text", "NO", None, "NO", None),
        ("dedupe_key", "text", "NO", None, "NO", None),
        ("message", "jsonb", "YES", None, "NO", None),  # NULL when the body holds it sealed (0020)
        ("state", "text", "NO", "'pending'::text", "NO", None),
        ("attempts", "integer", "NO", "0", "NO", None),
        ("last_error", "text", "YES", None, "NO", None),
        ("applied_at", "timestamp with time zone", "YES", None, "NO", None),
        ("updated_at", "timestamp with time zone", "NO", "now()", "NO", None),
    ]


def test_indexes(db: Conn) -> None:
    """call_id, session_id, message_type, dedupe_key and the sweeper's partial index on unfinished events exist."""
    rows = dict(db.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'call_events'").fetchall())
    assert (
        rows.items()
        >= {
            # partitioned (0022): the primary key holds the partition key too
            "call_events_pkey": (
                "CREATE UNIQUE INDEX call_events_pkey ON ONLY public.call_events USING btree (id, received_at)"
            ),
            # 0029: a hash of the key's digest (equality lookups only; the gate holds digests)
            "idx_call_events_dedupe_digest": (
                "CREATE INDEX idx_call_events_dedupe_digest ON ONLY public.call_events"
                " USING hash (ingest_dedupe_digest(dedupe_key))"
            ),
            "idx_call_events_call_id": (
                "CREATE INDEX idx_call_events_call_id ON ONLY public.call_events USING btree (call_id)"
            ),
            "idx_call_events_session_id": (
                "CREATE INDEX idx_call_events_session_id ON ONLY public.call_events USING btree (session_id)"
            ),
            "idx_call_events_message_type": (
                "CREATE INDEX idx_call_events_message_type ON ONLY public.call_events USING btree (message_type)"
            ),
            "idx_call_events_unfinished_received_at": (
                "CREATE INDEX idx_call_events_unfinished_received_at ON ONLY public.call_events"
                " USING btree (received_at)"
                " WHERE (state = ANY (ARRAY['pending'::text, 'waiting'::text, 'failed'::text]))"
            ),
        }.items()
    )


def test_defaults_on_insert(db: Conn) -> None:
    """A new event is pending with no attempts, stamped on arrival."""
    assert insert_event(db, "k1")[1:] == ("pending", 0, True, True)


def test_malformed_call_id_is_kept(db: Conn) -> None:
    """An event whose call id is not a uuid is still recorded verbatim."""
    insert_event(db, "k1", call_id="not-a-uuid", session_id="sess")
    assert db.execute("SELECT call_id, message FROM call_events").fetchone() == ("not-a-uuid", {"type": "x"})


def test_dedupe_key_is_unique(db: Conn) -> None:
    """call_event_keys holds each key's digest once; a writer's ON CONFLICT (key_digest) DO NOTHING skips a second."""
    insert = "INSERT INTO call_event_keys (key_digest, received_at) VALUES (ingest_dedupe_digest('k1'), now())"
    db.execute(insert)
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(insert)
    assert db.execute(insert + " ON CONFLICT (key_digest) DO NOTHING").rowcount == 0


@pytest.mark.parametrize("key", ["k1", "0f" * 32, "é|call|2026-01-01T00:00:00Z", ""])
def test_the_digest_is_the_first_16_bytes_of_the_keys_sha256(db: Conn, key: str) -> None:
    """ingest_dedupe_digest (0029) of any text: SHA-256 of its UTF-8, cut to 16 bytes (typed uuid)."""
    row = db.execute("SELECT ingest_dedupe_digest(%s)", (key,)).fetchone()
    assert row == (uuid.UUID(bytes=hashlib.sha256(key.encode()).digest()[:16]),)


def test_the_gate_holds_digests(db: Conn) -> None:
    """call_event_keys (0029): the 16-byte digest as primary key, received_at, a BRIN index on it."""
    columns = db.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_name = 'call_event_keys' ORDER BY ordinal_position"
    ).fetchall()
    assert columns == [("key_digest", "uuid", "NO"), ("received_at", "timestamp with time zone", "NO")]
    indexes = dict(db.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'call_event_keys'"))
    assert indexes == {
        "call_event_keys_pkey": (
            "CREATE UNIQUE INDEX call_event_keys_pkey ON public.call_event_keys USING btree (key_digest)"
        ),
        "idx_call_event_keys_received_at": (
            "CREATE INDEX idx_call_event_keys_received_at ON public.call_event_keys USING brin (received_at)"
        ),
    }


@pytest.mark.parametrize("state", ["pending", "waiting", "applied", "failed", "ignored"])
def test_known_states_are_accepted(db: Conn, state: str) -> None:
    """Each of the five states passes the CHECK."""
    assert insert_event(db, "k1", state=state)[1] == state


@pytest.mark.parametrize("state", ["done", "PENDING", ""])
def test_unknown_states_are_refused(db: Conn, state: str) -> None:
    """Any other state violates the CHECK constraint."""
    with pytest.raises(psycopg.errors.CheckViolation):
        insert_event(db, "k1", state=state)


@pytest.mark.parametrize("column", ["message_type", "dedupe_key"])
def test_required_columns(db: Conn, column: str) -> None:
    """message_type and dedupe_key are NOT NULL (the message: test_the_message_is_kept_once_plain_or_sealed)."""
    with pytest.raises(psycopg.errors.NotNullViolation):
        insert_event(db, "k1", **{column: None})


def test_id_is_generated_always(db: Conn) -> None:
    """ids come from the identity; a writer cannot choose one."""
    with pytest.raises(psycopg.errors.GeneratedAlways):
        insert_event(db, "k1", id=7)


def test_updated_at_follows_changes(db: Conn) -> None:
    """Any update stamps updated_at with the time of the change."""
    insert_event(db, "k1")
    db.execute("UPDATE call_events SET updated_at = '2000-01-01', received_at = '2000-01-01'")
    db.execute("UPDATE call_events SET state = 'applied', attempts = attempts + 1, applied_at = now()")
    row = db.execute("SELECT updated_at > received_at, state, attempts FROM call_events").fetchone()
    assert row == (True, "applied", 1)


def test_partitioned_by_received_at_with_the_same_rules_in_every_partition(db: Conn) -> None:
    """call_events is ranged on received_at; every partition keeps bodies out of line, the checks, the trigger, RLS."""
    key = db.execute("SELECT pg_get_partkeydef('call_events'::regclass)").fetchone()
    assert key == ("RANGE (received_at)",)
    partitions = db.execute(
        "SELECT c.relname, c.relrowsecurity, a.attstorage,"
        "       (SELECT count(*) FROM pg_constraint AS k WHERE k.conrelid = c.oid AND k.contype = 'c'),"
        "       (SELECT count(*) FROM pg_trigger AS t WHERE t.tgrelid = c.oid AND t.tgname = 'call_events_touch')"
        " FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid"
        " JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attname = 'body'"
        " WHERE i.inhparent = 'call_events'::regclass"
    ).fetchall()
    assert len(partitions) == 5  # this month, the next three, the default
    assert {row[1:] for row in partitions} == {(True, "e", 2, 1)}
    insert_event(db, "k1", received_at="2001-01-01")  # outside every month made: kept in the default
    assert db.execute("SELECT tableoid::regclass::text FROM call_events").fetchone() == ("call_events_default",)
