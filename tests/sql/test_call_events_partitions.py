"""call_events partitioned by month (migration 0022): the conversion, the dedupe gate, partition upkeep."""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from support.apply import PRIVACY

from ingest import queries
from ingest.apply import apply_event
from ingest.event import Event
from ingest.mapping.event_key import event_key
from ingest.migrate import MIGRATIONS_DIR, migrate
from ingest.vocabulary import EventState
from worker.sweeper import Sweeper

Conn = psycopg.Connection[tuple[Any, ...]]

TZ = "Pacific/Auckland"
CALL = "2f0c8a6e-54a8-4d2b-9c4e-0d7f3a1b2c3d"
ASSISTANT = "0b5e3c1a-2d4f-4a6b-8c9d-1e2f3a4b5c6d"


def status_update(n: int, call: str = CALL) -> dict[str, Any]:
    """A status-update of ``call``; ``n`` makes its dedupe key its own."""
    return {
        "type": "status-update",
        "status": "in-progress",
        "timestamp": 1_780_000_000_000 + n,
        "call": {"id": call, "assistantId": ASSISTANT},
    }


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make_partition(db: Conn, month: str) -> str:
    """The partition of a past month, as ingest_ensure_call_event_partitions makes one."""
    row = db.execute("SELECT ingest_create_call_event_partition(%s)", (at(month),)).fetchone()
    assert row is not None
    return str(row[0])


def digest(dedupe_key: str) -> uuid.UUID:
    """The key at the gate (migration 0029): ingest_dedupe_digest, the first 16 bytes of its SHA-256."""
    return uuid.UUID(bytes=hashlib.sha256(dedupe_key.encode()).digest()[:16])


def partition_of(db: Conn, dedupe_key: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT tableoid::regclass::text, attempts, state FROM call_events WHERE dedupe_key = %s", (dedupe_key,)
    ).fetchall()


def month_name(moment: datetime) -> str:
    return f"call_events_y{moment.year:04d}m{moment.month:02d}"


# -- the conversion -----------------------------------------------------------------------


def test_conversion_keeps_every_row_and_the_identity_continues(
    empty_db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Events of several months keep their ids, bodies, states and keys; the next event gets a fresh id."""
    older = tmp_path / "migrations"
    older.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name[:4] < "0022":
            shutil.copy(path, older / path.name)
    migrate(empty_db_url, local_timezone=TZ, directory=older, functions=None)
    columns = "id, received_at, dedupe_key, message, body, state, attempts, last_error, updated_at, status"
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        for n, (received, state) in enumerate(
            [("2025-11-30T23:00:00", "applied"), ("2025-12-01T00:00:00", "failed"), ("2026-01-15T12:00:00", "pending")]
            * 3
        ):
            sealed = n % 2 == 0
            conn.execute(
                "INSERT INTO call_events (received_at, message_type, dedupe_key, message, body, state, attempts,"
                " last_error, status) VALUES (%s, 'status-update', %s, %s, %s, %s, %s, %s, 'ended')",
                (
                    at(received) + timedelta(seconds=n),
                    f"key-{n}",
                    None if sealed else Jsonb({"n": n}),
                    f"v1:k:{n}".encode() if sealed else None,
                    state,
                    n,
                    "boom" if state == "failed" else None,
                ),
            )
        conn.execute("DELETE FROM call_events WHERE dedupe_key = 'key-8'")  # the identity is past the largest id
        before = conn.execute(f"SELECT {columns} FROM call_events ORDER BY id").fetchall()
    assert len(before) == 8

    with caplog.at_level(logging.INFO, logger="ingest.migrate"):
        migrate(empty_db_url, local_timezone=TZ)
    progress = [r.notice for r in caplog.records if r.getMessage() == "migration progress"]  # type: ignore[attr-defined]
    assert progress
    assert all(line.startswith("call_events: ") for line in progress)

    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert conn.execute("SELECT relkind FROM pg_class WHERE relname = 'call_events'").fetchone() == ("p",)
        assert conn.execute(f"SELECT {columns} FROM call_events ORDER BY id").fetchall() == before
        placed = conn.execute(
            "SELECT tableoid::regclass::text, count(*) FROM call_events GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert placed == [("call_events_y2025m11", 3), ("call_events_y2025m12", 3), ("call_events_y2026m01", 2)]
        keys = conn.execute("SELECT key_digest, received_at FROM call_event_keys ORDER BY received_at").fetchall()
        assert keys == sorted(((digest(row[2]), row[1]) for row in before), key=lambda key: key[1])
        assert conn.execute("SELECT to_regclass('call_events_unpartitioned')").fetchone() == (None,)
        state = apply_event(conn, Event(status_update(1), datetime.now(UTC)), PRIVACY)
        assert state is not None
        fresh = conn.execute("SELECT id FROM call_events WHERE dedupe_key = %s", (event_key(status_update(1)),))
        assert fresh.fetchone() == (10,)


# -- the dedupe gate ----------------------------------------------------------------------


def test_duplicate_straddling_a_month_boundary_is_applied_once(db: Conn) -> None:
    """The same message received at 23:59:59 on 31 January and again just after midnight is applied once."""
    january = make_partition(db, "2026-01-01T00:00:00")
    make_partition(db, "2026-02-01T00:00:00")
    message = status_update(1)
    assert apply_event(db, Event(message, at("2026-01-31T23:59:59")), PRIVACY) == EventState.APPLIED
    assert apply_event(db, Event(message, at("2026-02-01T00:00:01")), PRIVACY) is None
    assert partition_of(db, event_key(message)) == [(january, 1, "applied")]
    assert db.execute("SELECT count(*) FROM call_event_keys").fetchone() == (1,)


def test_redelivery_of_an_unfinished_event_counts_an_attempt_in_its_own_partition(db: Conn) -> None:
    """A known key whose event is not applied is found in its month: one more attempt, no second row."""
    january = make_partition(db, "2026-01-01T00:00:00")
    message = status_update(1)
    db.execute(queries.RECORD_FAILURE, Event(message, at("2026-01-31T23:59:59")).row(EventState.PENDING, PRIVACY, "x"))
    db.execute(queries.RECORD_FAILURE, Event(message, at("2026-02-01T00:00:01")).row(EventState.FAILED, PRIVACY, "y"))
    assert partition_of(db, event_key(message)) == [(january, 2, "failed")]
    db.execute(queries.STORE_PENDING_EVENT, Event(message, at("2026-02-02T00:00:00")).row(EventState.PENDING, PRIVACY))
    assert apply_event(db, Event(message, at("2026-03-01T00:00:00")), PRIVACY) == EventState.APPLIED
    assert partition_of(db, event_key(message)) == [(january, 3, "applied")]


def test_two_connections_recording_one_new_key_make_one_row(db_url: str) -> None:
    """The second of two simultaneous records of a new key waits for the first, then sees a duplicate."""
    message = status_update(1)
    results: list[EventState | None] = []
    with psycopg.connect(db_url) as first, psycopg.connect(db_url) as second:
        first.execute("SELECT 1")  # a transaction open: apply_event's own is a savepoint in it, not committed
        first_state = apply_event(first, Event(message, at("2026-01-31T23:59:59")), PRIVACY)
        worker = threading.Thread(
            target=lambda: results.append(apply_event(second, Event(message, at("2026-02-01T00:00:01")), PRIVACY))
        )
        worker.start()
        time.sleep(0.5)
        assert worker.is_alive()  # held at the gate by the first transaction
        first.commit()
        worker.join(10)
        second.commit()
        assert (first_state, results) == (EventState.APPLIED, [None])
        assert second.execute("SELECT count(*), max(attempts) FROM call_events").fetchone() == (1, 1)


def test_a_rolled_back_first_record_lets_the_waiting_one_insert(db_url: str) -> None:
    """Should the first transaction roll back, the waiting one records the event itself."""
    message = status_update(1)
    results: list[EventState | None] = []
    with psycopg.connect(db_url) as first, psycopg.connect(db_url) as second:
        first.execute("SELECT 1")
        apply_event(first, Event(message, at("2026-01-31T23:59:59")), PRIVACY)
        worker = threading.Thread(
            target=lambda: results.append(apply_event(second, Event(message, at("2026-02-01T00:00:01")), PRIVACY))
        )
        worker.start()
        time.sleep(0.5)
        first.rollback()
        worker.join(10)
        second.commit()
        assert results == [EventState.APPLIED]
        rows = second.execute("SELECT received_at FROM call_events").fetchall()
        assert rows == [(at("2026-02-01T00:00:01"),)]
        assert second.execute("SELECT received_at FROM call_event_keys").fetchall() == rows


# -- dropping a month -----------------------------------------------------------------------


def test_dropping_a_month_while_a_worker_applies_newer_events_loses_nothing_newer(db: Conn, db_url: str) -> None:
    """A month dropped during a stream of newer events takes its own rows only; its keys are then forgotten."""
    january = make_partition(db, "2026-01-01T00:00:00")
    old = [status_update(n) for n in range(20)]
    for message in old:
        apply_event(db, Event(message, at("2026-01-10T00:00:00")), PRIVACY)
    newer = [status_update(1000 + n) for n in range(60)]
    failures: list[BaseException] = []

    def apply_newer() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                for message in newer:
                    apply_event(conn, Event(message, datetime.now(UTC)), PRIVACY)
        except BaseException as exc:
            failures.append(exc)

    worker = threading.Thread(target=apply_newer)
    worker.start()
    time.sleep(0.05)
    assert db.execute("SELECT ingest_drop_call_event_partition(%s)", (january,)).fetchone() == (20,)
    worker.join(30)
    assert failures == []
    assert db.execute("SELECT to_regclass(%s)", (january,)).fetchone() == (None,)
    kept = {row[0] for row in db.execute("SELECT dedupe_key FROM call_events").fetchall()}
    assert kept == {event_key(message) for message in newer}
    forget = "SELECT ingest_forget_call_event_keys(%s, %s)"
    assert db.execute(forget, (at("2026-02-01T00:00:00"), 15)).fetchone() == (15,)  # a bounded batch
    assert db.execute(forget, (datetime.now(UTC) + timedelta(days=1), 100)).fetchone() == (5,)  # newer stay
    assert {row[0] for row in db.execute("SELECT key_digest FROM call_event_keys").fetchall()} == {
        digest(key) for key in kept
    }
    # forgotten, a redelivery is recorded again
    assert apply_event(db, Event(old[0], datetime.now(UTC)), PRIVACY) == EventState.APPLIED


def test_drop_refuses_a_month_with_a_pending_or_waiting_event(db: Conn) -> None:
    """A partition holding a pending event is refused and kept whole; failed ones do not hold it."""
    january = make_partition(db, "2026-01-01T00:00:00")
    db.execute(queries.RECORD_FAILURE, Event(status_update(1), at("2026-01-05")).row(EventState.FAILED, PRIVACY, "x"))
    db.execute(queries.STORE_PENDING_EVENT, Event(status_update(2), at("2026-01-06")).row(EventState.PENDING, PRIVACY))
    listed = db.execute("SELECT rows, unfinished FROM ingest_call_event_partitions() WHERE name = %s", (january,))
    assert listed.fetchone() == (2, 1)
    with pytest.raises(psycopg.errors.RestrictViolation, match="1 pending or waiting"):
        db.execute("SELECT ingest_drop_call_event_partition(%s)", (january,))
    assert db.execute(f"SELECT count(*) FROM {january}").fetchone() == (2,)
    db.execute("UPDATE call_events SET state = 'ignored' WHERE state = 'pending'")
    assert db.execute("SELECT ingest_drop_call_event_partition(%s)", (january,)).fetchone() == (2,)


@pytest.mark.parametrize("which", ["default", "current"])
def test_drop_refuses_the_default_and_the_current_month(db: Conn, which: str) -> None:
    """The default partition and a month not over yet are never dropped."""
    name = "call_events_default" if which == "default" else month_name(datetime.now(UTC))
    with pytest.raises(psycopg.errors.RestrictViolation):
        db.execute("SELECT ingest_drop_call_event_partition(%s)", (name,))
    assert db.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone() == (True,)


# -- making partitions --------------------------------------------------------------------


def test_partitions_list_this_month_and_the_next_three(db: Conn) -> None:
    """A migrated database has this month's partition, the next three and the default, listed in order."""
    rows = db.execute("SELECT name, month_start, month_end, rows FROM ingest_call_event_partitions()").fetchall()
    start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    months = [start]
    for _ in range(4):
        months.append((months[-1] + timedelta(days=32)).replace(day=1))
    assert rows == [
        *[(month_name(lo), lo, hi, 0) for lo, hi in zip(months, months[1:], strict=False)],
        ("call_events_default", None, None, 0),
    ]


def test_ensure_is_idempotent_and_moves_rows_out_of_the_default(db: Conn) -> None:
    """Events beyond the made months wait in the default; making their month moves them there, keys still valid."""
    assert db.execute("SELECT ingest_ensure_call_event_partitions()").fetchone() == (0,)
    later = datetime.now(UTC) + timedelta(days=31 * 6)
    message = status_update(1)
    assert apply_event(db, Event(message, later), PRIVACY) == EventState.APPLIED
    apply_event(db, Event(status_update(2), datetime.now(UTC)), PRIVACY)
    assert partition_of(db, event_key(message)) == [("call_events_default", 1, "applied")]
    made = db.execute("SELECT ingest_ensure_call_event_partitions(6)").fetchone()
    assert made == (3,)
    assert db.execute("SELECT ingest_ensure_call_event_partitions(6)").fetchone() == (0,)
    assert partition_of(db, event_key(message)) == [(month_name(later), 1, "applied")]
    assert db.execute("SELECT count(*) FROM call_events_default").fetchone() == (0,)
    assert apply_event(db, Event(message, later + timedelta(seconds=1)), PRIVACY) is None
    grants = db.execute(
        "SELECT relacl::text, relrowsecurity FROM pg_class WHERE relname = %s", (month_name(later),)
    ).fetchone()
    assert grants is not None
    assert grants[1] is True
    assert "anon" not in str(grants[0])


def test_the_sweeper_makes_missing_partitions_when_it_starts(db: Conn, db_url: str) -> None:
    """A worker's sweeper thread makes a missing month at start, long before its first sweep."""
    next_month = (datetime.now(UTC).replace(day=1) + timedelta(days=32)).replace(day=1)
    db.execute(f"DROP TABLE {month_name(next_month)}")
    with ConnectionPool(db_url, min_size=1, max_size=2) as pool:
        sweeper = Sweeper(pool, PRIVACY, interval=3600, grace=120)
        sweeper.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if db.execute("SELECT to_regclass(%s)", (month_name(next_month),)).fetchone() != (None,):
                break
            time.sleep(0.05)
        sweeper.stop(0.1)
    assert db.execute("SELECT to_regclass(%s)::text", (month_name(next_month),)).fetchone() == (month_name(next_month),)
