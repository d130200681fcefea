"""The _nz columns and local-time helpers: NZ daylight saving, session TimeZone, configured zone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

Conn = psycopg.Connection[tuple[Any, ...]]

ASSISTANT = "0f6d7a64-1a7c-4b8e-9c55-3e2f1d0c9b8a"

# (instant, its New Zealand wall-clock time): just before and after both 2026 changes.
DST_CASES = [
    # 2026-04-05 03:00 NZDT -> 02:00 NZST (2026-04-04T14:00Z); 02:00-03:00 local happens twice.
    ("2026-04-04T13:59:59Z", "2026-04-05 02:59:59"),
    ("2026-04-04T14:00:00Z", "2026-04-05 02:00:00"),
    ("2026-04-04T13:30:00Z", "2026-04-05 02:30:00"),
    ("2026-04-04T14:30:00Z", "2026-04-05 02:30:00"),
    ("2026-04-03T12:00:00Z", "2026-04-04 01:00:00"),
    ("2026-04-06T12:00:00Z", "2026-04-07 00:00:00"),
    # 2026-09-27 02:00 NZST -> 03:00 NZDT (2026-09-26T14:00Z); 02:00-03:00 local never happens.
    ("2026-09-26T13:59:59Z", "2026-09-27 01:59:59"),
    ("2026-09-26T14:00:00Z", "2026-09-27 03:00:00"),
    ("2026-09-25T12:00:00Z", "2026-09-26 00:00:00"),
    ("2026-09-28T12:00:00Z", "2026-09-29 01:00:00"),
]


def utc_reading(conn: Conn, expression: str, *params: Any) -> str:
    """Evaluate a timestamptz expression and read it in UTC, as text."""
    row = conn.execute(f"SELECT to_char(({expression}) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')", params).fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.parametrize(("instant", "local"), DST_CASES)
def test_wallclock_across_new_zealand_dst(db: Conn, instant: str, local: str) -> None:
    """ingest_local_wallclock gives the NZ wall-clock time on both sides of each 2026 DST change."""
    assert utc_reading(db, "ingest_local_wallclock(%s::timestamptz)", instant) == local


@pytest.mark.parametrize("session_zone", ["UTC", "America/Los_Angeles", "Pacific/Auckland"])
def test_trigger_fills_nz_columns_in_any_session_zone(db: Conn, session_zone: str) -> None:
    """Rows written in any session TimeZone get _nz = the NZ wall-clock of _utc, even when _nz was given wrong."""
    db.execute("SELECT set_config('TimeZone', %s, false)", (session_zone,))
    for instant, _ in DST_CASES:
        db.execute(
            "INSERT INTO user_sessions (assistant_id, session_id, started_at_utc, started_at_nz)"
            " VALUES (%s, %s, %s, %s::timestamptz AT TIME ZONE 'Pacific/Auckland')",
            (ASSISTANT, instant, instant, instant),
        )
        # The end arrives later, and its _nz is not given at all.
        db.execute("UPDATE user_sessions SET ended_at_utc = %s WHERE session_id = %s", (instant, instant))
    for instant, local in DST_CASES:
        for column in ("started_at_nz", "ended_at_nz"):
            got = utc_reading(db, f"SELECT {column} FROM user_sessions WHERE session_id = %s", instant)
            assert (instant, column, got) == (instant, column, local)


def test_utc_is_derived_from_a_lone_nz_value(db: Conn) -> None:
    """A writer that only gives the wall-clock (_nz) gets the instant (_utc) filled in."""
    db.execute(
        "INSERT INTO user_sessions (assistant_id, started_at_nz, ended_at_nz)"
        " VALUES (%s, '2026-09-27 03:30:00+00', '2026-09-27 03:40:00+00')",
        (ASSISTANT,),
    )
    row = db.execute("SELECT started_at_utc, ended_at_utc, duration_seconds FROM user_sessions").fetchone()
    assert row is not None
    assert row[0] == datetime(2026, 9, 26, 14, 30, tzinfo=UTC)
    assert row[1] == datetime(2026, 9, 26, 14, 40, tzinfo=UTC)
    assert row[2] == 600


def test_clearing_utc_clears_nz(db: Conn) -> None:
    """Setting _utc to NULL clears the derived _nz instead of resurrecting _utc from it."""
    db.execute(
        "INSERT INTO user_sessions (assistant_id, started_at_utc, ended_at_utc)"
        " VALUES (%s, '2026-01-01T00:00Z', '2026-01-01T00:05Z')",
        (ASSISTANT,),
    )
    db.execute("UPDATE user_sessions SET ended_at_utc = NULL")
    assert db.execute("SELECT ended_at_utc, ended_at_nz FROM user_sessions").fetchone() == (None, None)


@pytest.mark.parametrize(
    ("zone", "instant", "local"),
    [
        ("Australia/Sydney", "2026-04-04T14:00:00Z", "2026-04-05 01:00:00"),  # AEDT ends 2026-04-05 03:00
        ("Australia/Sydney", "2026-04-04T16:30:00Z", "2026-04-05 02:30:00"),
        ("UTC", "2026-04-04T14:00:00Z", "2026-04-04 14:00:00"),
        ("Pacific/Auckland", "2026-04-04T14:00:00Z", "2026-04-05 02:00:00"),
    ],
)
def test_configured_zone_drives_every_function(db: Conn, zone: str, instant: str, local: str) -> None:
    """Changing ingest_settings local_timezone changes the helpers and what the trigger stores."""
    db.execute("UPDATE ingest_settings SET value = %s WHERE key = 'local_timezone'", (zone,))
    assert db.execute("SELECT ingest_local_timezone()").fetchone() == (zone,)
    assert utc_reading(db, "ingest_local_wallclock(%s::timestamptz)", instant) == local
    assert db.execute("SELECT ingest_local_date(%s::timestamptz)::text", (instant,)).fetchone() == (local[:10],)
    assert db.execute("SELECT ingest_local_month(%s::timestamptz)::text", (instant,)).fetchone() == (local[:8] + "01",)
    db.execute("INSERT INTO user_sessions (assistant_id, started_at_utc) VALUES (%s, %s)", (ASSISTANT, instant))
    assert utc_reading(db, "SELECT started_at_nz FROM user_sessions") == local


def test_unset_zone_defaults_to_auckland(db: Conn) -> None:
    """Without a local_timezone setting the functions use Pacific/Auckland."""
    db.execute("DELETE FROM ingest_settings WHERE key = 'local_timezone'")
    assert db.execute("SELECT ingest_local_timezone()").fetchone() == ("Pacific/Auckland",)


def test_unknown_zone_is_refused(db: Conn) -> None:
    """ingest_settings rejects a local_timezone Postgres does not know, so writes never start failing."""
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("UPDATE ingest_settings SET value = 'Mars/Olympus' WHERE key = 'local_timezone'")


def test_two_argument_wallclock_is_immutable(db: Conn) -> None:
    """ingest_local_wallclock(ts, zone) needs no settings and gives the same answer."""
    assert utc_reading(db, "ingest_local_wallclock('2026-09-26T14:00Z', 'Pacific/Auckland')") == "2026-09-27 03:00:00"
    assert db.execute(
        "SELECT provolatile FROM pg_proc WHERE proname = 'ingest_local_wallclock' AND pronargs = 2"
    ).fetchone() == ("i",)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31), timezones=st.just(UTC)),
    st.sampled_from(["UTC", "America/New_York", "Pacific/Auckland", "Asia/Kathmandu"]),
)
@example(datetime(2026, 4, 4, 13, 30, tzinfo=UTC), "UTC")  # 02:30 NZDT, repeated an hour later in NZST
@example(datetime(2026, 9, 26, 14, 0, tzinfo=UTC), "America/New_York")  # 03:00 NZDT, right after the gap
def test_wallclock_matches_zoneinfo(db: Conn, instant: datetime, session_zone: str) -> None:
    """For any instant and session TimeZone, the _nz value's UTC reading is zoneinfo's Auckland wall-clock."""
    db.execute("SELECT set_config('TimeZone', %s, false)", (session_zone,))
    expected = instant.astimezone(ZoneInfo("Pacific/Auckland")).replace(tzinfo=None)
    row = db.execute("SELECT ingest_local_wallclock(%s) AT TIME ZONE 'UTC'", (instant,)).fetchone()
    assert row == (expected,)
    # The inverse round-trips, except in the repeated hour of a fall-back where it picks the
    # later instant (zoneinfo's fold=1), as Postgres does for ambiguous local times.
    back = db.execute("SELECT ingest_local_instant(ingest_local_wallclock(%s))", (instant,)).fetchone()
    # (Compared in UTC: PEP 495 makes inter-zone == False for ambiguous local times.)
    assert back == (expected.replace(tzinfo=ZoneInfo("Pacific/Auckland"), fold=1).astimezone(UTC),)
