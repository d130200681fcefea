"""client_monthly_usage: each ended session counted exactly once, corrections moved by their delta."""

from __future__ import annotations

import threading
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

Conn = psycopg.Connection[tuple[Any, ...]]

ASSISTANT = "0f6d7a64-1a7c-4b8e-9c55-3e2f1d0c9b8a"
NOV = date(2026, 11, 1)
DEC = date(2026, 12, 1)


def usage(conn: Conn) -> dict[tuple[str, date], tuple[int, Decimal, Decimal]]:
    rows = conn.execute("SELECT client_id, month, calls, minutes, cost FROM client_monthly_usage").fetchall()
    return {(c, m): (calls, minutes, cost) for c, m, calls, minutes, cost in rows}


def nonzero_usage(conn: Conn) -> dict[tuple[str, date], tuple[int, Decimal, Decimal]]:
    return {key: value for key, value in usage(conn).items() if any(value)}


def insert_session(conn: Conn, **columns: Any) -> str:
    columns = {"assistant_id": ASSISTANT, **columns}
    names = ", ".join(columns)
    placeholders = ", ".join(["%s"] * len(columns))
    row = conn.execute(
        f"INSERT INTO user_sessions ({names}) VALUES ({placeholders}) RETURNING id::text", tuple(columns.values())
    ).fetchone()
    assert row is not None
    return str(row[0])


def update_session(conn: Conn, session: str, **columns: Any) -> None:
    assignments = ", ".join(f"{name} = %s" for name in columns)
    conn.execute(f"UPDATE user_sessions SET {assignments} WHERE id = %s", (*columns.values(), session))


def ended_session(conn: Conn, client: str | None = "c1", **columns: Any) -> str:
    defaults = {
        "client_id": client,
        "started_at_utc": "2026-11-10T01:00:00Z",
        "ended_at_utc": "2026-11-10T01:05:00Z",
        "cost_total": Decimal("1.5"),
    }
    return insert_session(conn, **(defaults | columns))


def test_ending_a_session_counts_once_however_often_it_is_updated(db: Conn) -> None:
    """A session that ends is counted once; repeated and unrelated updates add nothing."""
    session = insert_session(db, client_id="c1", started_at_utc="2026-11-10T01:00:00Z")
    assert usage(db) == {}
    for _ in range(3):
        update_session(db, session, ended_at_utc="2026-11-10T01:05:00Z", cost_total=Decimal("1.5"))
    update_session(db, session, call_summary="summary", sentiment="positive")
    assert usage(db) == {("c1", NOV): (1, Decimal("5.00"), Decimal("1.5000"))}


def test_insert_of_an_already_ended_row_counts(db: Conn) -> None:
    """An upsert that creates the row already ended (the report arrived first) counts it."""
    ended_session(db)
    assert usage(db) == {("c1", NOV): (1, Decimal("5.00"), Decimal("1.5000"))}


def test_worker_style_upsert_replayed_counts_once(db: Conn) -> None:
    """The same end-of-call upsert delivered three times counts one call."""
    statement = """
        INSERT INTO user_sessions AS s (call_id, assistant_id, client_id, started_at_utc, ended_at_utc, cost_total)
        VALUES ('5b0c4f0e-8f0a-4f57-9d8e-2b1f3c4d5e6f', %s, 'c1', '2026-11-10T01:00Z', '2026-11-10T01:05Z', 1.5)
        ON CONFLICT (call_id) DO UPDATE
        SET ended_at_utc = excluded.ended_at_utc,
            cost_total = coalesce(excluded.cost_total, s.cost_total),
            metadata = coalesce(s.metadata, '{}') || coalesce(excluded.metadata, '{}')
    """
    for _ in range(3):
        db.execute(statement, (ASSISTANT,))
    assert usage(db) == {("c1", NOV): (1, Decimal("5.00"), Decimal("1.5000"))}


def test_duration_correction_moves_the_difference(db: Conn) -> None:
    """Correcting the duration changes minutes by the difference, not by a second call."""
    session = ended_session(db)
    update_session(db, session, duration_seconds=Decimal("420"))
    assert usage(db) == {("c1", NOV): (1, Decimal("7.00"), Decimal("1.5000"))}
    update_session(db, session, duration_minutes=Decimal("6.25"))
    assert usage(db) == {("c1", NOV): (1, Decimal("6.25"), Decimal("1.5000"))}


def test_cost_correction_moves_the_difference(db: Conn) -> None:
    """Correcting cost_total changes the month's cost by the difference."""
    ended_session(db)
    other = ended_session(db, cost_total=Decimal("2"))
    update_session(db, other, cost_total=Decimal("2.25"))
    assert usage(db) == {("c1", NOV): (2, Decimal("10.00"), Decimal("3.7500"))}


def test_client_change_moves_the_whole_contribution(db: Conn) -> None:
    """Re-assigning a session to another client moves its call, minutes and cost."""
    session = ended_session(db)
    update_session(db, session, client_id="c2")
    assert nonzero_usage(db) == {("c2", NOV): (1, Decimal("5.00"), Decimal("1.5000"))}
    # The emptied month is removed, not left at zero: usage must not depend on event order.
    assert usage(db) == nonzero_usage(db)


def test_start_correction_moves_to_the_local_month(db: Conn) -> None:
    """A corrected start time that crosses a local month boundary moves the contribution."""
    session = ended_session(db)
    update_session(db, session, started_at_utc="2026-11-30T12:30:00Z", ended_at_utc="2026-11-30T12:35:00Z")
    assert nonzero_usage(db) == {("c1", DEC): (1, Decimal("5.00"), Decimal("1.5000"))}


def test_month_is_the_new_zealand_local_month(db: Conn) -> None:
    """A call starting 2026-11-30T12:30Z (01:30 on 1 December in Auckland) counts in December."""
    ended_session(db, started_at_utc="2026-11-30T12:30:00Z", ended_at_utc="2026-11-30T12:40:00Z")
    ended_session(db, started_at_utc="2026-11-30T10:30:00Z", ended_at_utc="2026-11-30T10:40:00Z")
    assert usage(db) == {
        ("c1", DEC): (1, Decimal("10.00"), Decimal("1.5000")),
        ("c1", NOV): (1, Decimal("10.00"), Decimal("1.5000")),
    }


def test_month_falls_back_to_the_end_time(db: Conn) -> None:
    """A session with no start is counted in the local month of its end."""
    insert_session(db, client_id="c1", ended_at_utc="2026-11-30T11:00:00Z", duration_seconds=60)
    assert usage(db) == {("c1", DEC): (1, Decimal("1.00"), Decimal("0.0000"))}


def test_session_without_client_counts_nowhere_until_it_has_one(db: Conn) -> None:
    """No client, no usage; once the client is known the session is counted."""
    session = ended_session(db, client=None)
    assert usage(db) == {}
    assert db.execute("SELECT count(*) FROM session_usage_ledger").fetchone() == (0,)
    update_session(db, session, client_id="c9")
    assert usage(db) == {("c9", NOV): (1, Decimal("5.00"), Decimal("1.5000"))}


def test_deleting_a_session_removes_its_contribution(db: Conn) -> None:
    """Deleting a counted session subtracts it (the ledger row cascades away)."""
    keep = ended_session(db)
    drop = ended_session(db, cost_total=Decimal("3"))
    db.execute("DELETE FROM user_sessions WHERE id = %s", (drop,))
    assert usage(db) == {("c1", NOV): (1, Decimal("5.00"), Decimal("1.5000"))}
    assert db.execute("SELECT session_id::text FROM session_usage_ledger").fetchall() == [(keep,)]


def test_moving_the_only_call_out_of_a_month_leaves_no_empty_row(db: Conn) -> None:
    """A call first counted in its end's month moves to its start's month without a zero row behind."""
    session = insert_session(db, client_id="c1", ended_at_utc="2026-12-02T11:00:00Z", duration_seconds=60)
    update_session(db, session, started_at_utc="2026-11-02T10:59:00Z")
    assert usage(db) == {("c1", NOV): (1, Decimal("1.00"), Decimal("0.0000"))}


def test_reopened_session_is_uncounted(db: Conn) -> None:
    """Clearing ended_at_utc (a bad write) takes the session back out of usage."""
    session = ended_session(db)
    update_session(db, session, ended_at_utc=None)
    assert nonzero_usage(db) == {}


def test_concurrent_sessions_of_one_client_add_up(db: Conn, db_url: str) -> None:
    """Sessions of one client ended at the same moment from separate connections all count."""
    sessions = [insert_session(db, client_id="c1", started_at_utc="2026-11-10T01:00:00Z") for _ in range(8)]
    barrier = threading.Barrier(len(sessions))
    errors: list[BaseException] = []

    def end(session: str) -> None:
        try:
            with psycopg.connect(db_url) as conn:
                barrier.wait(timeout=10)
                update_session(conn, session, ended_at_utc="2026-11-10T01:01:00Z", cost_total=Decimal("0.5"))
                conn.commit()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=end, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert usage(db) == {("c1", NOV): (8, Decimal("8.00"), Decimal("4.0000"))}


EXPECTED_FROM_ROWS = """
    SELECT client_id, ingest_local_month(coalesce(started_at_utc, ended_at_utc)),
           count(*), coalesce(sum(duration_minutes), 0), coalesce(sum(cost_total), 0)
    FROM user_sessions
    WHERE ended_at_utc IS NOT NULL AND client_id IS NOT NULL
    GROUP BY 1, 2
"""

WRITES = st.fixed_dictionaries(
    {},
    optional={
        "client_id": st.sampled_from([None, "c1", "c2"]),
        "started_at_utc": st.sampled_from(["2026-11-10T01:00:00Z", "2026-11-30T12:30:00Z", None]),
        "ended_at_utc": st.sampled_from(["2026-11-30T12:59:00Z", None]),
        "duration_seconds": st.sampled_from([None, Decimal("30"), Decimal("95.5")]),
        "duration_minutes": st.sampled_from([None, Decimal("2.25")]),
        "cost_total": st.sampled_from([None, Decimal("0.1"), Decimal("1.2345")]),
        "call_summary": st.sampled_from(["a", "b"]),
    },
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 2), WRITES, st.booleans()), min_size=1, max_size=12))
def test_usage_always_equals_the_ended_sessions(db: Conn, steps: list[tuple[int, dict[str, Any], bool]]) -> None:
    """After any sequence of writes and deletes, usage equals the sums over ended sessions with a client."""
    db.execute("DELETE FROM user_sessions")
    db.execute("DELETE FROM client_monthly_usage")
    call_ids = [str(uuid.uuid4()) for _ in range(3)]
    for index, write, delete in steps:
        if delete:
            db.execute("DELETE FROM user_sessions WHERE call_id = %s", (call_ids[index],))
            continue
        columns = {"call_id": call_ids[index], "assistant_id": ASSISTANT, **write}
        names = ", ".join(columns)
        updates = ", ".join(f"{name} = excluded.{name}" for name in write) or "call_id = excluded.call_id"
        db.execute(
            f"INSERT INTO user_sessions ({names}) VALUES ({', '.join(['%s'] * len(columns))})"
            f" ON CONFLICT (call_id) DO UPDATE SET {updates}",
            tuple(columns.values()),
        )
    expected = {(c, m): (n, minutes, cost) for c, m, n, minutes, cost in db.execute(EXPECTED_FROM_ROWS).fetchall()}
    assert nonzero_usage(db) == {key: value for key, value in expected.items() if any(value)}
