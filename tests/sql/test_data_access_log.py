"""data_access_log (migration 0021): append-only even for its owner, closed to the API roles, bounded."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors

from ingest import queries

Conn = psycopg.Connection[tuple[Any, ...]]

INSERT = (
    "INSERT INTO data_access_log (actor, actor_kind, action, surface, target_kind, target, target_count)"
    " VALUES ('alice', 'os_user', 'view_call', 'cli', 'call', '44447e38-9fd3-4025-bc93-2132b1b437d0', 1)"
)


@pytest.fixture
def logged(db: Conn) -> Conn:
    """One entry, written as the table's owner (the tests' superuser)."""
    db.execute(INSERT)
    return db


@pytest.mark.parametrize(
    ("statement", "operation"),
    [
        ("UPDATE data_access_log SET actor = 'mallory'", "UPDATE"),
        ("DELETE FROM data_access_log", "DELETE"),
        ("TRUNCATE data_access_log", "TRUNCATE"),
    ],
)
def test_rows_cannot_be_changed_or_removed_even_by_the_owner(logged: Conn, statement: str, operation: str) -> None:
    """UPDATE, DELETE and TRUNCATE fail with a clear error for the owner too; the row stays as written."""
    owner = logged.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'data_access_log'").fetchone()
    assert owner == logged.execute("SELECT current_user").fetchone()
    with pytest.raises(errors.RestrictViolation, match=f"data_access_log is append-only: {operation} is refused"):
        logged.execute(statement)
    assert logged.execute("SELECT actor, target_count FROM data_access_log").fetchall() == [("alice", 1)]


def test_inserting_takes_the_defaults(logged: Conn) -> None:
    """A new row gets its id, the time, the database role that wrote it and empty details."""
    row = logged.execute(
        "SELECT id, now() - at < interval '1 minute', db_role, details FROM data_access_log"
    ).fetchone()
    assert row == (1, True, "postgres", {})


@pytest.mark.parametrize(
    ("column", "value", "violates"),
    [
        ("actor", "''", "data_access_log_lengths_check"),
        ("actor", "repeat('x', 201)", "data_access_log_lengths_check"),
        ("reason", "repeat('x', 1001)", "data_access_log_lengths_check"),
        ("action", "'View Call'", "data_access_log_names_check"),
        ("target_kind", "'call; drop'", "data_access_log_names_check"),
        ("target_count", "-1", "data_access_log_target_count_check"),
        ("details", "'[1, 2]'::jsonb", "data_access_log_details_check"),
    ],
)
def test_values_are_bounded(db: Conn, column: str, value: str, violates: str) -> None:
    """Empty or overlong text, malformed names, negative counts and non-object details are refused."""
    columns = {
        "actor": "'alice'",
        "actor_kind": "'os_user'",
        "action": "'view_call'",
        "surface": "'cli'",
        column: value,
    }
    statement = f"INSERT INTO data_access_log ({', '.join(columns)}) VALUES ({', '.join(columns.values())})"
    with pytest.raises(errors.CheckViolation, match=violates):
        db.execute(statement)


@pytest.mark.parametrize("role", ["anon", "authenticated", "service_role"])
@pytest.mark.parametrize(
    "statement", ["SELECT * FROM data_access_log", INSERT, "SELECT nextval('data_access_log_id_seq')"]
)
def test_api_roles_can_neither_read_nor_write(logged: Conn, db_url: str, role: str, statement: str) -> None:
    """anon, authenticated and service_role have no privilege on the table or its sequence, claims or not."""
    with psycopg.connect(db_url) as conn:
        conn.execute(f"SET LOCAL ROLE {role}")
        conn.execute("SELECT set_config('request.jwt.claims', '{\"client_id\": \"c1\"}', true)")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement)


def test_row_level_security_is_on_without_policies(db: Conn) -> None:
    """RLS is enabled and no policy opens the table to anyone."""
    assert db.execute("SELECT relrowsecurity FROM pg_class WHERE relname = 'data_access_log'").fetchone() == (True,)
    assert db.execute("SELECT count(*) FROM pg_policies WHERE tablename = 'data_access_log'").fetchone() == (0,)


def test_lookups_by_call_and_time_use_the_indexes(db: Conn) -> None:
    """`ingest audit list --call` reads the target and details.call indexes, `--since` the index on at."""
    db.execute(
        "INSERT INTO data_access_log (actor, actor_kind, action, surface, target, details)"
        " SELECT 'alice', 'os_user', 'view_event', 'cli', n::text, jsonb_build_object('call', 'c' || n)"
        " FROM generate_series(1, 2000) AS n"
    )
    db.execute("ANALYZE data_access_log")
    params: dict[str, Any] = {"call": "c7", "actor": None, "action": None, "since": None, "limit": 50}
    plan = "\n".join(row[0] for row in db.execute(b"EXPLAIN " + queries.ACCESS_ENTRIES.encode(), params).fetchall())
    assert "idx_data_access_log_target" in plan
    assert "idx_data_access_log_details_call" in plan
    params = {**params, "call": None, "since": "2999-01-01T00:00Z"}
    plan = "\n".join(row[0] for row in db.execute(b"EXPLAIN " + queries.ACCESS_ENTRIES.encode(), params).fetchall())
    assert "idx_data_access_log_at" in plan
