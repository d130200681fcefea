"""`ingest calls list|show` and ingest.ops.calls against real Postgres: key fields, masked numbers, local times."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import psycopg
import pytest
from support.apply import apply_bodies
from support.fixtures import load_call
from support.ops_cli import store_failed, use_servers

from ingest.cli import main
from ingest.ops import calls
from ingest.vocabulary import EventState

BOOKING = "44447e38-9fd3-4025-bc93-2132b1b437d0"  # client-harbourside-dental, started 2026-03-10 21:14:05Z
VOICEMAIL = "29e81e6b-26b0-4097-8509-32a0d88f1a97"  # client-kiwi-solar, outbound, started 2026-07-14 22:00:13Z
PHYSIO = "e0b9afa2-56ad-4ccd-8dec-38a1666fb01b"  # client-summit-physio, started 2026-01-21 03:11:29Z
SESSION = "sess_tui_7YqK2mWc9LpR4xVb"  # a chat session, started 2026-10-08 04:12:09Z
KIWI_SOLAR_ASSISTANT = "2538eb2b-bd63-4815-bad0-6faf31be39b8"
BOOKING_CUSTOMER = "+64211234567"
BOOKING_BUSINESS = "+6493001122"
UNKNOWN = "0b6c2a9e-1d3f-4c5b-8a7e-9f0d1c2b3a4e"
Conn = psycopg.Connection[Any]


# -- the library: ingest.ops.calls ------------------------------------------------------------


@pytest.fixture
def recorded(db: Conn) -> Conn:
    for name in ("inbound_booking", "voicemail", "assistant_request_first", "session_chat"):
        apply_bodies(db, load_call(name))
    return db


def test_list_is_newest_started_first_with_key_fields(recorded: Conn) -> None:
    """Rows come newest started first, with UTC and local start, cost, identity and the customer masked."""
    listed = calls.list_calls(recorded)
    assert [c.key for c in listed] == [SESSION, VOICEMAIL, BOOKING, PHYSIO]
    booking = listed[2]
    assert booking.started_at == datetime(2026, 3, 10, 21, 14, 5, 334000, tzinfo=UTC)
    assert (booking.started_at_local, booking.local_timezone) == (
        datetime(2026, 3, 11, 10, 14, 5, 334000),
        "Pacific/Auckland",
    )
    assert (booking.duration_seconds, booking.cost_total) == (Decimal("62.900"), Decimal("0.0986"))
    assert (booking.client_id, booking.type, booking.outcome) == (
        "client-harbourside-dental",
        "inbound",
        "appointment_booked",
    )
    assert booking.ended_reason == "customer-ended-call"
    assert booking.customer == "•••4567"
    as_json = orjson.dumps(booking.as_dict()).decode()
    assert "+64211234567" not in as_json
    assert '"started_at_local":"2026-03-11T10:14:05.334000"' in as_json
    assert '"cost_total":"0.0986"' in as_json
    assert listed[0].call_id is None
    assert listed[0].session_id == SESSION


def test_list_filters(recorded: Conn) -> None:
    """since, client, assistant (any case), outcome (any case) and limit narrow the list."""
    since = datetime(2026, 3, 10, 21, 14, 5, 334000, tzinfo=UTC)
    assert [c.key for c in calls.list_calls(recorded, since=since)] == [SESSION, VOICEMAIL, BOOKING]
    assert [c.key for c in calls.list_calls(recorded, client="client-harbourside-dental")] == [BOOKING]
    assert [c.key for c in calls.list_calls(recorded, assistant=KIWI_SOLAR_ASSISTANT.upper())] == [VOICEMAIL]
    assert [c.key for c in calls.list_calls(recorded, outcome=" Appointment_Booked ")] == [BOOKING]
    assert [c.key for c in calls.list_calls(recorded, limit=1)] == [SESSION]
    assert calls.list_calls(recorded, client="nobody") == []
    with pytest.raises(ValueError, match="not a UUID"):
        calls.list_calls(recorded, assistant="asst_123")
    with pytest.raises(ValueError, match="limit"):
        calls.list_calls(recorded, limit=0)


def test_a_row_that_never_started_is_listed_by_its_creation(recorded: Conn) -> None:
    """A row with no start yet is placed (and filtered) by when it was created, so it is never hidden."""
    recorded.execute(
        "INSERT INTO user_sessions (call_id, assistant_id) VALUES (%s, %s)", (UNKNOWN, KIWI_SOLAR_ASSISTANT)
    )
    assert calls.list_calls(recorded)[0].key == UNKNOWN  # created now: newer than every recorded start
    listed = calls.list_calls(recorded, since=datetime.now(UTC) - timedelta(minutes=5))
    assert [(c.key, c.started_at, c.started_at_local) for c in listed] == [(UNKNOWN, None, None)]


def test_get_call_has_every_column_provenance_and_events(recorded: Conn) -> None:
    """One call: every column as stored, its local times and zone, metadata.provenance, and its events."""
    queued = load_call("inbound_booking")[0]  # a status update, made distinct by its timestamp
    failed = store_failed(
        recorded, queued.replace(b'"timestamp":1773177243519', b'"timestamp":1773177243520'), RuntimeError("boom\nmore")
    )
    detail = calls.get_call(recorded, BOOKING.upper())
    assert detail is not None
    columns = [
        row[0]
        for row in recorded.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'user_sessions'"
            " ORDER BY ordinal_position"
        ).fetchall()
    ]
    assert list(detail.row) == columns
    assert detail.row["customer_number"] == "+64211234567"  # as stored: masking is the front's job
    assert detail.row["call_transcript"]
    assert detail.started_at_local == datetime(2026, 3, 11, 10, 14, 5, 334000)
    assert detail.ended_at_local == datetime(2026, 3, 11, 10, 15, 8, 234000)
    assert detail.local_timezone == "Pacific/Auckland"
    assert detail.provenance["call_outcome"] == "structured"
    assert detail.provenance["started_at_utc"] == "report"
    stored = recorded.execute("SELECT id, state FROM call_events WHERE call_id = %s ORDER BY id", (BOOKING,)).fetchall()
    assert [(e.id, e.state) for e in detail.events] == [(i, EventState(s)) for i, s in stored]
    assert {EventState.APPLIED, EventState.FAILED} <= {e.state for e in detail.events}
    [failure] = [e for e in detail.events if e.id == failed]
    assert failure.error == "RuntimeError: boom"
    as_json = orjson.loads(orjson.dumps(detail.as_dict()))
    assert as_json["row"]["call_id"] == BOOKING
    assert as_json["local"] == {
        "timezone": "Pacific/Auckland",
        "started_at_local": "2026-03-11T10:14:05.334000",
        "ended_at_local": "2026-03-11T10:15:08.234000",
    }


def test_get_call_unknown_or_malformed(recorded: Conn) -> None:
    """An unknown call id is None; a malformed one is refused."""
    assert calls.get_call(recorded, UNKNOWN) is None
    with pytest.raises(ValueError, match="not a UUID"):
        calls.get_call(recorded, "call_8e21f0f7b3c94d6a")


# -- the command: ingest calls -----------------------------------------------------------------


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, db_url: str, db: Conn) -> Conn:
    use_servers(monkeypatch, db_url=db_url)
    for name in ("inbound_booking", "voicemail"):
        apply_bodies(db, load_call(name))
    return db


def test_list_prints_key_fields_with_masked_numbers(served: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """`calls list` shows each call's key fields, UTC and local start, and never a whole number or a transcript."""
    assert main(["calls", "list", "--since", "2026-01-01"]) == 0
    out = capsys.readouterr().out
    header, *lines = out.splitlines()
    assert re.split(r"\s{2,}", header)[:3] == ["CALL/SESSION", "STARTED (UTC)", "STARTED (Pacific/Auckland)"]
    assert [line.split()[0] for line in lines] == [VOICEMAIL, BOOKING]
    booking = lines[1]
    for field in (
        "2026-03-10 21:14:05Z",
        "2026-03-11 10:14:05",
        "1m02s",
        "0.0986",
        "client-harbourside-dental",
        "359ecb8e-2b18-470f-b38b-2b3e375752bb",
        "inbound",
        "appointment_booked",
        "customer-ended-call",
        "•••4567",
    ):
        assert field in booking, field
    assert BOOKING_CUSTOMER not in out
    assert "Hemi" not in out  # nothing of the summary or the transcript


def test_list_json_and_filters(served: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the same calls as data (numbers masked); the filters narrow; nothing found says so."""
    assert main(["calls", "list", "--since", "2026-01-01", "--outcome", "voicemail", "--json"]) == 0
    [listed] = orjson.loads(capsys.readouterr().out)
    assert (listed["call_id"], listed["client_id"], listed["customer"]) == (VOICEMAIL, "client-kiwi-solar", "•••0147")
    assert listed["started_at_local"] == "2026-07-15T10:00:13.987000"
    assert main(["calls", "list", "--since", "2026-01-01", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert VOICEMAIL in out
    assert BOOKING not in out
    assert "(the newest 1; --limit for more)" in out
    assert main(["calls", "list"]) == 0  # no time limit by default: the newest 50
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == [VOICEMAIL, BOOKING]
    assert main(["calls", "list", "--since", "1d"]) == 0  # the recorded calls started months ago
    assert capsys.readouterr().out.startswith("no calls started since ")
    assert main(["calls", "list", "--since", "2026-01-01", "--client", "nobody"]) == 0
    assert capsys.readouterr().out.strip().endswith("matching the filters")


def test_show_prints_every_column_local_times_provenance_and_events(
    served: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    """`calls show` labels the _nz times with their zone, masks numbers, shows the transcript, provenance, events."""
    assert main(["calls", "show", BOOKING.upper()]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"call {BOOKING}\n")
    columns = [
        row[0]
        for row in served.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'user_sessions'"
        ).fetchall()
    ]
    labels = {line.split()[0] for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert set(columns) <= labels
    assert (
        "started_at_nz     2026-03-11 10:14:05 Pacific/Auckland"
        "  (stored as 2026-03-11 10:14:05+00: the local wall-clock time, read as UTC)"
    ) in out
    assert "started_at_utc    2026-03-10 21:14:05Z\n  started_at_nz     2026-03-11 10:14:05 Pacific/Auckland" in out
    assert "customer_number   •••4567" in out
    assert "business_number   •••1122" in out
    assert BOOKING_CUSTOMER not in out
    assert BOOKING_BUSINESS not in out
    assert "call_summary:\n  Hemi Walker called to book" in out
    assert "call_transcript:\n  " in out
    assert "provenance (the source of each value; sources, best first: structured, report," in out
    assert re.search(r"^  call_outcome +structured$", out, re.M)
    events = served.execute("SELECT count(*) FROM call_events WHERE call_id = %s", (BOOKING,)).fetchone()
    assert events is not None
    assert f"events ({events[0]}, in arrival order):" in out
    assert "end-of-call-report" in out
    assert out.rstrip().endswith(
        f"phone numbers are masked; `ingest calls show {BOOKING} --json` prints the row as stored,"
        " `ingest events show ID` an event's message."
    )


def test_show_json_is_the_row_as_stored(served: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """`calls show --json` prints every column unmasked, the local times, provenance and events."""
    assert main(["calls", "show", BOOKING, "--json"]) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["row"]["customer_number"] == BOOKING_CUSTOMER
    assert shown["row"]["started_at_nz"] == "2026-03-11T10:14:05.334000+00:00"
    assert shown["local"]["started_at_local"] == "2026-03-11T10:14:05.334000"
    assert shown["provenance"]["cost_total"] == "report"
    assert {event["state"] for event in shown["events"]} == {"applied"}


def test_show_refuses_a_malformed_id_and_reports_an_unknown_one(
    served: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    """A call id that is not a UUID is a usage error (exit 2); an unknown call is exit 1 with a message."""
    with pytest.raises(SystemExit) as exited:
        main(["calls", "show", "call_8e21f0f7b3c94d6a"])
    assert exited.value.code == 2
    assert "'call_8e21f0f7b3c94d6a' is not a call id: a UUID" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["calls", "list", "--assistant", "asst_1"])
    assert exited.value.code == 2
    assert "'asst_1' is not an assistant id" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["calls", "list", "--since", "yesterday"])
    assert exited.value.code == 2
    assert main(["calls", "show", UNKNOWN]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"ingest calls show: no call {UNKNOWN} in user_sessions" in captured.err
    assert f"ingest events list --call {UNKNOWN} --state pending,waiting,failed" in captured.err
