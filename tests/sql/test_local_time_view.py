"""The *_nz columns explain themselves: column comments, and user_sessions_local's plain local times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

Conn = psycopg.Connection[tuple[Any, ...]]

ASSISTANT = "0f6d7a64-1a7c-4b8e-9c55-3e2f1d0c9b8a"


def test_every_nz_column_has_a_comment_saying_it_is_wall_clock_time(db: Conn) -> None:
    """Every *_nz column in public says, in psql's \\d+, that its +00 reading is local time."""
    rows = db.execute(
        """
        SELECT c.table_name, c.column_name, col_description(format('%I.%I', c.table_schema, c.table_name)::regclass,
                                                             c.ordinal_position)
        FROM information_schema.columns AS c
        JOIN pg_class AS k ON k.relname = c.table_name AND k.relkind = 'r'
        WHERE c.table_schema = 'public' AND c.column_name LIKE '%\\_nz'
        """
    ).fetchall()
    assert {(table, column) for table, column, _ in rows} == {
        ("user_sessions", "started_at_nz"),
        ("user_sessions", "ended_at_nz"),
    }
    for _, column, comment in rows:
        assert comment is not None, column
        assert "wall-clock" in comment
        assert "2026-01-21 16:11:29+00" in comment
        assert f"{column.replace('_nz', '_local')}" in comment


@pytest.mark.parametrize("session_zone", ["UTC", "America/New_York", "Pacific/Chatham"])
def test_view_shows_nz_values_as_local_timestamps_with_their_zone(db: Conn, session_zone: str) -> None:
    """started_at_local is started_at_nz's wall-clock reading, whatever the session's TimeZone."""
    db.execute(
        "INSERT INTO user_sessions (call_id, assistant_id, started_at_utc, ended_at_utc)"
        " VALUES ('e0b9afa2-56ad-4ccd-8dec-38a1666fb01b', %s, '2026-01-21T03:11:29Z', '2026-01-21T03:20:00Z')",
        (ASSISTANT,),
    )
    db.execute("SELECT set_config('TimeZone', %s, false)", (session_zone,))
    row = db.execute(
        "SELECT started_at_local, ended_at_local, local_timezone, started_at_nz, started_at_utc"
        " FROM user_sessions_local"
    ).fetchone()
    assert row is not None
    started_local, ended_local, zone, started_nz, started_utc = row
    assert (started_local, ended_local, zone) == (
        datetime(2026, 1, 21, 16, 11, 29),
        datetime(2026, 1, 21, 16, 20),
        "Pacific/Auckland",
    )
    assert started_local.tzinfo is None
    # The table's columns as they are: the _nz value is that wall-clock time read as UTC.
    assert (started_nz, started_utc) == (
        datetime(2026, 1, 21, 16, 11, 29, tzinfo=UTC),
        datetime(2026, 1, 21, 3, 11, 29, tzinfo=UTC),
    )
    types = dict(
        db.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'user_sessions_local' AND column_name LIKE '%\\_local'"
        ).fetchall()
    )
    assert types == {"started_at_local": "timestamp without time zone", "ended_at_local": "timestamp without time zone"}


def test_view_has_every_column_of_the_table_first(db: Conn) -> None:
    """user_sessions_local is user_sessions, column for column, plus the local times and their zone."""
    query = "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position"
    table = [row[0] for row in db.execute(query, ("user_sessions",)).fetchall()]
    view = [row[0] for row in db.execute(query, ("user_sessions_local",)).fetchall()]
    assert view == [*table, "started_at_local", "ended_at_local", "local_timezone"]


def test_view_runs_as_the_caller(db: Conn) -> None:
    """The view is security_invoker, so the table's row-level security applies to whoever reads it."""
    options = db.execute("SELECT reloptions FROM pg_class WHERE relname = 'user_sessions_local'").fetchone()
    assert options == (["security_invoker=true"],)
