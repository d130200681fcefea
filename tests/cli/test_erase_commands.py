"""`ingest erase` and `ingest calls export` in-process against real Postgres: the dry run, the audit row,
the reason's rules, and the access-request export."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
import pytest
from support.apply import apply_bodies
from support.fixtures import load_call
from support.ops_cli import use_servers

from ingest.cli import main
from ingest.pseudonym import pseudonym
from ingest.settings import Settings

BOOKING = "44447e38-9fd3-4025-bc93-2132b1b437d0"
CALLER = "+64211234567"
REASON = "ticket PRIV-77: erasure request"
KEY = Settings.from_env().require_pseudonym_key()
Conn = psycopg.Connection[Any]


@pytest.fixture
def recorded(db: Conn, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Conn:
    apply_bodies(db, load_call("inbound_booking"))
    apply_bodies(db, load_call("voicemail"))
    use_servers(monkeypatch, db_url=db_url)
    return db


def snapshot(conn: Conn) -> tuple[Any, ...]:
    return (
        conn.execute("SELECT * FROM user_sessions ORDER BY id").fetchall(),
        conn.execute("SELECT id, state FROM call_events ORDER BY id").fetchall(),
    )


def test_a_dry_run_counts_per_client_and_changes_nothing(recorded: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run shows the sessions and events per client, writes no tombstone and leaves the rows."""
    before = snapshot(recorded)
    assert main(["erase", "--customer-number", "021 123 4567", "--reason", REASON, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would erase 1 session(s)" in out
    assert "client-harbourside-dental" in out
    assert CALLER not in out
    assert snapshot(recorded) == before
    assert recorded.execute("SELECT count(*) FROM erased_calls").fetchone() == (0,)


def test_an_erasure_is_one_audit_row_without_the_number(recorded: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """One `erase` row with the reason, the count and the pseudonym; the tombstone points at it."""
    assert main(["erase", "--customer-number", "+64 21 123 4567", "--reason", REASON, "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["sessions"] == 1
    rows = recorded.execute(
        "SELECT id, action, target_kind, target_count, reason, details::text FROM data_access_log"
        " WHERE action = 'erase'"
    ).fetchall()
    assert len(rows) == 1
    audit_id, _, kind, count, reason, details = rows[0]
    assert (kind, count, reason) == ("bulk", 1, REASON)
    assert pseudonym(CALLER, KEY) in details
    assert "1234567" not in details
    assert recorded.execute("SELECT call_id::text, audit_id FROM erased_calls").fetchall() == [(BOOKING, audit_id)]
    assert main(["erase", "--call", BOOKING.upper(), "--reason", REASON]) == 0  # again, by call id
    target = recorded.execute("SELECT target_kind, target FROM data_access_log ORDER BY id DESC LIMIT 1").fetchone()
    assert target == ("call", BOOKING)


def test_a_reason_holding_a_number_or_a_bad_number_is_refused(
    recorded: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    """The access log keeps the reason for good: a phone number in it is refused, as is a number that is none."""
    before = snapshot(recorded)
    assert main(["erase", "--customer-number", CALLER, "--reason", f"caller {CALLER} asked"]) == 2
    assert main(["erase", "--customer-number", "12", "--reason", REASON]) == 2
    assert "not a valid phone number" in capsys.readouterr().err
    assert snapshot(recorded) == before
    assert recorded.execute("SELECT count(*) FROM data_access_log WHERE action = 'erase'").fetchone() == (0,)


def test_export_gives_everything_about_a_caller_revealed(recorded: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """`calls export` prints the caller's rows with originals and raw messages opened, recorded as an export."""
    assert main(["calls", "export", "--customer-number", "0211234567", "--reason", REASON]) == 0
    exported = orjson.loads(capsys.readouterr().out)
    assert exported["customer_number"] == CALLER
    [session] = exported["sessions"]
    assert session["row"]["call_id"] == BOOKING
    assert "Hemi Walker" in session["row"]["call_transcript"]
    assert session["events"]
    assert all("message" in event and event["message"].get("type") for event in session["events"])
    assert session["events"][-1]["message"]["call"]["id"] == BOOKING
    entry = recorded.execute(
        "SELECT target_kind, target_count, reason FROM data_access_log WHERE action = 'export'"
    ).fetchall()
    assert entry == [("bulk", 1, REASON)]
