"""The seed's five SQL usage examples, run verbatim, in UTC and in other session time zones.

The seed's placeholders 'assistant-uuid-here', 'phone-number-uuid-here' and 'call-uuid-here'
are not valid uuids (Postgres would reject them), so only those literals are replaced by
real uuids; every other character of the examples is the seed's.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

Conn = psycopg.Connection[tuple[Any, ...]]

NZ = ZoneInfo("Pacific/Auckland")
ASSISTANT = "0f6d7a64-1a7c-4b8e-9c55-3e2f1d0c9b8a"
PHONE = "7d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

CREATE_SESSION = """
INSERT INTO user_sessions (
  call_id,
  assistant_id,
  phone_number_id,
  business_number,
  customer_number,
  started_at_utc,
  started_at_nz,
  type,
  client_id,
  session_id
)
VALUES (
  gen_random_uuid(),
  'assistant-uuid-here',
  'phone-number-uuid-here',
  '+6491234567',
  '+6497654321',
  NOW(),
  NOW() AT TIME ZONE 'Pacific/Auckland',
  'inbound',
  'client-123',
  'session-abc123'
);
"""

END_SESSION = """
UPDATE user_sessions
SET
  ended_at_utc = NOW(),
  ended_at_nz = NOW() AT TIME ZONE 'Pacific/Auckland',
  ended_reason = 'completed',
  duration_minutes = 5.5,
  duration_seconds = 330.5,
  cost_total = 2.75,
  call_summary = 'Customer inquiry about product pricing',
  sentiment = 'positive',
  call_outcome = 'information_provided',
  keywords = ARRAY['pricing', 'product', 'inquiry']
WHERE call_id = 'call-uuid-here';
"""

SEARCH = """
SELECT *
FROM user_sessions
WHERE to_tsvector('english', call_summary) @@ plainto_tsquery('english', 'pricing support')
   OR to_tsvector('english', call_transcript) @@ plainto_tsquery('english', 'pricing support');
"""

DATE_RANGE = """
SELECT *
FROM user_sessions
WHERE client_id = 'client-123'
  AND started_at_utc >= '2025-11-01'
  AND started_at_utc < '2025-12-01'
ORDER BY started_at_utc DESC;
"""

AGGREGATE = """
SELECT
  client_id,
  COUNT(*) as total_calls,
  SUM(duration_minutes) as total_minutes,
  SUM(cost_total) as total_cost,
  AVG(duration_minutes) as avg_duration
FROM user_sessions
WHERE started_at_utc >= DATE_TRUNC('month', NOW())
GROUP BY client_id;
"""

SESSION_ZONES = ["UTC", "America/Los_Angeles", "Asia/Kolkata", "Pacific/Chatham"]


def wallclock(instant: datetime) -> datetime:
    """DESIGN.md's _nz rule computed in Python: the NZ wall-clock read as UTC."""
    return instant.astimezone(NZ).replace(tzinfo=ZoneInfo("UTC"))


@pytest.fixture(params=SESSION_ZONES)
def conn(db: Conn, request: pytest.FixtureRequest) -> Conn:
    """The test database with the session TimeZone set as a seed user might have it."""
    db.execute("SELECT set_config('TimeZone', %s, false)", (request.param,))
    return db


def run_seed_insert(conn: Conn) -> tuple[Any, ...]:
    conn.execute(
        CREATE_SESSION.replace("'assistant-uuid-here'", f"'{ASSISTANT}'").replace(
            "'phone-number-uuid-here'", f"'{PHONE}'"
        )
    )
    row = conn.execute(
        "SELECT call_id, started_at_utc, started_at_nz FROM user_sessions WHERE session_id = 'session-abc123'"
    ).fetchone()
    assert row is not None
    return row


def add_session(conn: Conn, client: str, started: str, **columns: Any) -> None:
    names = ["assistant_id", "client_id", "started_at_utc", *columns]
    placeholders = ", ".join(["%s"] * len(names))
    conn.execute(
        f"INSERT INTO user_sessions ({', '.join(names)}) VALUES ({placeholders})",
        (ASSISTANT, client, started, *columns.values()),
    )


def started_column(conn: Conn, query: str) -> list[str]:
    """Run a seed query verbatim; return its rows' started_at_utc as UTC ISO strings, in row order."""
    cursor = conn.execute(query)
    rows = cursor.fetchall()
    index = [column.name for column in cursor.description or []].index("started_at_utc")
    return [row[index].astimezone(ZoneInfo("UTC")).isoformat() for row in rows]


def test_create_session_example(conn: Conn) -> None:
    """The seed's INSERT stores the row with the correct NZ wall-clock in any session TimeZone."""
    call_id, started_utc, started_nz = run_seed_insert(conn)
    assert call_id is not None
    assert started_nz == wallclock(started_utc)
    row = conn.execute(
        "SELECT business_number, customer_number, type, client_id, assistant_id::text, phone_number_id::text"
        " FROM user_sessions"
    ).fetchone()
    assert row == ("+6491234567", "+6497654321", "inbound", "client-123", ASSISTANT, PHONE)


def test_end_session_example(conn: Conn) -> None:
    """The seed's end-of-call UPDATE keeps its values, fixes ended_at_nz and counts usage once."""
    call_id, started_utc, _ = run_seed_insert(conn)
    conn.execute(END_SESSION.replace("'call-uuid-here'", f"'{call_id}'"))
    row = conn.execute(
        """
        SELECT ended_at_utc, ended_at_nz, ended_reason, duration_minutes, duration_seconds, cost_total,
               call_summary, sentiment, call_outcome, keywords, metadata ->> 'cost_source'
        FROM user_sessions WHERE call_id = %s
        """,
        (call_id,),
    ).fetchone()
    assert row is not None
    ended_utc, ended_nz, *rest = row
    assert ended_nz == wallclock(ended_utc)
    assert rest == [
        "completed",
        Decimal("5.50"),
        Decimal("330.500"),
        Decimal("2.7500"),
        "Customer inquiry about product pricing",
        "positive",
        "information_provided",
        ["pricing", "product", "inquiry"],
        "reported",
    ]
    month = started_utc.astimezone(NZ).date().replace(day=1)
    usage = conn.execute("SELECT client_id, month, calls, minutes, cost FROM client_monthly_usage").fetchall()
    assert usage == [("client-123", month, 1, Decimal("5.50"), Decimal("2.7500"))]


def test_search_example(conn: Conn) -> None:
    """The seed's full-text search finds the sessions whose summary or transcript has both words."""
    add_session(conn, "client-123", "2026-01-10T01:00Z", call_summary="Customer inquiry about product pricing")
    add_session(conn, "client-123", "2026-01-10T02:00Z", call_summary="Asked for pricing support on invoices")
    add_session(
        conn, "client-9", "2026-01-10T03:00Z", call_transcript="Agent: hello. Caller: I need support with pricing."
    )
    add_session(conn, "client-9", "2026-01-10T04:00Z", call_transcript="Caller: wrong number")
    found = started_column(conn, SEARCH)
    assert sorted(found) == ["2026-01-10T02:00:00+00:00", "2026-01-10T03:00:00+00:00"]


def test_search_example_uses_the_gin_indexes(db: Conn) -> None:
    """With sequential scans discouraged the planner answers the seed's search from its two GIN indexes."""
    db.execute("SET enable_seqscan = off")
    plan = "\n".join(row[0] for row in db.execute("EXPLAIN " + SEARCH).fetchall())
    assert "idx_user_sessions_summary_search" in plan
    assert "idx_user_sessions_transcript_search" in plan


def test_date_range_example(conn: Conn) -> None:
    """The seed's date-range query returns client-123's November 2025 sessions, newest first."""
    add_session(conn, "client-123", "2025-10-15T09:00Z")
    add_session(conn, "client-123", "2025-11-05T09:00Z")
    add_session(conn, "client-123", "2025-11-20T09:00Z")
    add_session(conn, "client-123", "2025-12-15T09:00Z")
    add_session(conn, "client-456", "2025-11-10T09:00Z")
    assert started_column(conn, DATE_RANGE) == ["2025-11-20T09:00:00+00:00", "2025-11-05T09:00:00+00:00"]


def test_aggregate_example(conn: Conn) -> None:
    """The seed's per-client aggregate over the current month sums the sessions that started this month."""
    call_id, _, _ = run_seed_insert(conn)
    conn.execute(END_SESSION.replace("'call-uuid-here'", f"'{call_id}'"))
    now = conn.execute("SELECT now()").fetchone()
    assert now is not None
    later = (now[0] + timedelta(seconds=1)).isoformat()
    add_session(conn, "client-123", later, duration_minutes=Decimal("2.5"), cost_total=Decimal("1.25"))
    add_session(conn, "client-456", later, duration_seconds=Decimal("60"))
    add_session(conn, "client-123", "2025-11-05T09:00Z", duration_minutes=Decimal("9"), cost_total=Decimal("9"))
    rows = {row[0]: row[1:] for row in conn.execute(AGGREGATE).fetchall()}
    assert rows == {
        "client-123": (2, Decimal("8.00"), Decimal("4.0000"), Decimal("4.0000000000000000")),
        "client-456": (1, Decimal("1.00"), None, Decimal("1.00000000000000000000")),
    }
