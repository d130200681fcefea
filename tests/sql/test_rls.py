"""Row-level security the way PostgREST uses it: SET ROLE plus request.jwt.claims per transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
import pytest

Conn = psycopg.Connection[tuple[Any, ...]]

ASSISTANT_A = "0f6d7a64-1a7c-4b8e-9c55-3e2f1d0c9b8a"
ASSISTANT_B = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


@contextmanager
def as_role(db_url: str, role: str, claims: dict[str, Any] | None = None) -> Iterator[Conn]:
    """A transaction running as `role` with the given JWT claims, rolled back afterwards."""
    with psycopg.connect(db_url) as conn:
        conn.execute(f"SET LOCAL ROLE {role}")
        if claims is not None:
            conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        yield conn
        conn.rollback()


@pytest.fixture
def sessions(db: Conn) -> Conn:
    """Three clients' sessions on two assistants, ended in November 2026 (NZ time)."""
    rows = [
        ("c1", ASSISTANT_A, "2026-11-10T01:00Z", "positive", ["pricing"]),
        ("c1", ASSISTANT_B, "2026-11-11T01:00Z", "negative", ["refund"]),
        ("c2", ASSISTANT_A, "2026-11-12T01:00Z", "neutral", ["pricing"]),
        ("c3", ASSISTANT_B, "2026-11-13T01:00Z", "positive", None),
    ]
    for client, assistant, started, sentiment, keywords in rows:
        db.execute(
            "INSERT INTO user_sessions (client_id, assistant_id, started_at_utc, ended_at_utc, duration_seconds,"
            " cost_total, sentiment, keywords) VALUES (%s, %s, %s, %s::timestamptz + interval '2 min', 120, 1, %s, %s)",
            (client, assistant, started, started, sentiment, keywords),
        )
    return db


def visible_clients(conn: Conn, table: str = "user_sessions") -> list[str]:
    return [row[0] for row in conn.execute(f"SELECT client_id FROM {table} ORDER BY client_id").fetchall()]


def test_client_sees_only_its_own_sessions(sessions: Conn, db_url: str) -> None:
    """authenticated with client_id c1 in its claims reads c1's sessions and nothing else."""
    with as_role(db_url, "authenticated", {"client_id": "c1", "role": "authenticated"}) as conn:
        assert visible_clients(conn) == ["c1", "c1"]
        assert conn.execute("SELECT count(*) FROM user_sessions WHERE client_id = 'c2'").fetchone() == (0,)


def test_no_claims_sees_nothing(sessions: Conn, db_url: str) -> None:
    """authenticated without request.jwt.claims (or with empty claims) sees no rows."""
    with as_role(db_url, "authenticated") as conn:
        assert visible_clients(conn) == []
    with as_role(db_url, "authenticated", {}) as conn:
        assert visible_clients(conn) == []


def test_claims_do_not_leak_between_transactions(sessions: Conn, db_url: str) -> None:
    """Claims set with is_local=true end with their transaction, as PostgREST relies on."""
    with psycopg.connect(db_url) as conn:
        with conn.transaction():
            conn.execute("SET LOCAL ROLE authenticated")
            conn.execute("SELECT set_config('request.jwt.claims', '{\"client_id\": \"c1\"}', true)")
            assert len(visible_clients(conn)) == 2
        with conn.transaction():
            conn.execute("SET LOCAL ROLE authenticated")
            assert visible_clients(conn) == []


@pytest.mark.parametrize(
    "statement",
    [
        f"INSERT INTO user_sessions (assistant_id, client_id) VALUES ('{ASSISTANT_A}', 'c1')",
        "UPDATE user_sessions SET sentiment = 'x' WHERE client_id = 'c1'",
        "DELETE FROM user_sessions WHERE client_id = 'c1'",
    ],
)
def test_client_cannot_write(sessions: Conn, db_url: str, statement: str) -> None:
    """authenticated may not insert, update or delete sessions, even its own."""
    with (
        as_role(db_url, "authenticated", {"client_id": "c1"}) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(statement)


@pytest.mark.parametrize(
    "table",
    ["user_sessions", "client_monthly_usage", "client_subscriptions", "assistants", "call_events", "ingest_settings"],
)
def test_anon_reads_nothing(sessions: Conn, db_url: str, table: str) -> None:
    """anon has no privilege on any of the project's tables."""
    with as_role(db_url, "anon", {"client_id": "c1"}) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(f"SELECT * FROM {table}")


@pytest.mark.parametrize("table", ["assistants", "phone_numbers", "session_usage_ledger", "call_events"])
def test_client_cannot_read_internal_tables(sessions: Conn, db_url: str, table: str) -> None:
    """Routing, ledger and raw event tables are not exposed to authenticated."""
    with (
        as_role(db_url, "authenticated", {"client_id": "c1"}) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(f"SELECT * FROM {table}")


def test_client_sees_only_its_own_usage_and_subscription(sessions: Conn, db_url: str) -> None:
    """client_monthly_usage and client_subscriptions show a client its own rows only."""
    assert len(visible_clients(sessions, "client_monthly_usage")) == 3
    with as_role(db_url, "authenticated", {"client_id": "c2"}) as conn:
        assert visible_clients(conn, "client_monthly_usage") == ["c2"]
        assert visible_clients(conn, "client_subscriptions") == ["c2"]


def test_service_role_sees_only_its_assistants_sessions(sessions: Conn, db_url: str) -> None:
    """service_role (without BYPASSRLS) with an assistant_id claim reads that assistant's sessions."""
    bypass = sessions.execute("SELECT rolbypassrls FROM pg_roles WHERE rolname = 'service_role'").fetchone()
    if bypass != (False,):
        pytest.skip("service_role bypasses RLS on this server (Supabase), the policy is moot")
    with as_role(db_url, "service_role", {"assistant_id": ASSISTANT_A}) as conn:
        assert visible_clients(conn) == ["c1", "c2"]
    with as_role(db_url, "service_role", {"assistant_id": ASSISTANT_B.upper()}) as conn:
        assert visible_clients(conn) == ["c1", "c3"]
    with as_role(db_url, "service_role") as conn:
        assert visible_clients(conn) == []


@pytest.mark.parametrize("claim", ["not-a-uuid", "", "0f6d7a64-1a7c-4b8e-9c55", 42, None, "'; DROP TABLE x; --"])
def test_malformed_assistant_claim_gives_no_rows(sessions: Conn, db_url: str, claim: Any) -> None:
    """A malformed assistant_id claim matches nothing instead of raising a cast error."""
    with as_role(db_url, "service_role", {"assistant_id": claim}) as conn:
        assert visible_clients(conn) == []


def test_assistant_policy_can_use_the_index(sessions: Conn, db_url: str) -> None:
    """The claim is converted, not the column, so idx_user_sessions_assistant_id serves the policy."""
    with as_role(db_url, "service_role", {"assistant_id": ASSISTANT_A}) as conn:
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN SELECT * FROM user_sessions").fetchall())
    assert "idx_user_sessions_assistant_id" in plan


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ASSISTANT_A, ASSISTANT_A),
        (ASSISTANT_A.upper(), ASSISTANT_A),
        (ASSISTANT_A.replace("-", ""), ASSISTANT_A),
        ("{" + ASSISTANT_A + "}", ASSISTANT_A),
        ("not-a-uuid", None),
        (ASSISTANT_A + "0", None),
        (" " + ASSISTANT_A, None),
        ("", None),
        (None, None),
    ],
)
def test_try_uuid(db: Conn, text: str | None, expected: str | None) -> None:
    """ingest_try_uuid converts what is a uuid and returns NULL for anything else."""
    assert db.execute("SELECT ingest_try_uuid(%s)::text", (text,)).fetchone() == (expected,)


def test_rpc_under_rls_returns_only_the_callers_data(sessions: Conn, db_url: str) -> None:
    """get_client_call_analytics as authenticated c1 aggregates c1's sessions, and nothing for c2's id."""
    query = "SELECT total_calls, total_cost, sentiment_counts FROM get_client_call_analytics(%s, %s, %s)"
    with as_role(db_url, "authenticated", {"client_id": "c1"}) as conn:
        own = conn.execute(query, ("c1", "2026-11-01", "2026-11-30")).fetchone()
        other = conn.execute(query, ("c2", "2026-11-01", "2026-11-30")).fetchone()
    assert own == (2, Decimal("2.0000"), {"positive": 1, "negative": 1})
    assert other == (0, 0, {})
    assert sessions.execute(query, ("c2", "2026-11-01", "2026-11-30")).fetchone() == (
        1,
        Decimal("1.0000"),
        {"neutral": 1},
    )


def test_rpc_is_not_callable_by_anon(sessions: Conn, db_url: str) -> None:
    """anon may not execute the analytics RPC."""
    with as_role(db_url, "anon") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM get_client_call_analytics('c1', '2026-11-01', '2026-11-30')")


def test_local_time_view_applies_the_tables_row_level_security(sessions: Conn, db_url: str) -> None:
    """user_sessions_local runs as the caller: authenticated c1 sees its own rows through it, anon nothing."""
    assert len(visible_clients(sessions, "user_sessions_local")) == 4  # the owner sees every row
    with as_role(db_url, "authenticated", {"client_id": "c1"}) as conn:
        assert visible_clients(conn, "user_sessions_local") == ["c1", "c1"]
        assert conn.execute("SELECT count(*) FROM user_sessions_local WHERE client_id = 'c2'").fetchone() == (0,)
    with as_role(db_url, "authenticated") as conn:
        assert visible_clients(conn, "user_sessions_local") == []
    with as_role(db_url, "anon", {"client_id": "c1"}) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM user_sessions_local")


def test_local_time_view_shows_service_role_its_assistants_sessions(sessions: Conn, db_url: str) -> None:
    """service_role reads through user_sessions_local what its assistant_id claim lets it read in the table."""
    bypass = sessions.execute("SELECT rolbypassrls FROM pg_roles WHERE rolname = 'service_role'").fetchone()
    if bypass != (False,):
        pytest.skip("service_role bypasses RLS on this server (Supabase), the policy is moot")
    with as_role(db_url, "service_role", {"assistant_id": ASSISTANT_B}) as conn:
        assert visible_clients(conn, "user_sessions_local") == ["c1", "c3"]
