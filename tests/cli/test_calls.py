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
from support.personal_data import CARD, EMAIL, REASON, sealing_key, with_personal_data

from ingest import audit
from ingest.cli import main
from ingest.ops import calls
from ingest.sealing import generate_key
from ingest.vocabulary import EventState

BOOKING = "44447e38-9fd3-4025-bc93-2132b1b437d0"  # client-harbourside-dental, started 2026-03-10 21:14:05Z
VOICEMAIL = "29e81e6b-26b0-4097-8509-32a0d88f1a97"  # client-kiwi-solar, outbound, started 2026-07-14 22:00:13Z
PHYSIO = "e0b9afa2-56ad-4ccd-8dec-38a1666fb01b"  # client-summit-physio, started 2026-01-21 03:11:29Z
SESSION = "sess_tui_7YqK2mWc9LpR4xVb"  # a chat session, started 2026-10-08 04:12:09Z
KIWI_SOLAR_ASSISTANT = "2538eb2b-bd63-4815-bad0-6faf31be39b8"
BOOKING_CUSTOMER = "+64211234567"
BOOKING_BUSINESS = "+6493001122"
CLIENT = "client-harbourside-dental"
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
    assert re.search(
        r"^  started_at_nz +2026-03-11 10:14:05 Pacific/Auckland"
        r"  \(stored as 2026-03-11 10:14:05\+00: the local wall-clock time, read as UTC\)$",
        out,
        re.M,
    )
    assert re.search(
        r"^  started_at_utc +2026-03-10 21:14:05Z\n  started_at_nz +2026-03-11 10:14:05 Pacific/Auckland", out, re.M
    )
    assert re.search(r"^  customer_number +•••4567$", out, re.M)
    assert re.search(r"^  business_number +•••1122$", out, re.M)
    assert re.search(r"^  call_transcript_original +-$", out, re.M)  # nothing redacted: no original kept
    assert BOOKING_CUSTOMER not in out
    assert BOOKING_BUSINESS not in out
    assert "call_summary:\n  Hemi Walker called to book" in out
    assert "call_transcript:\n  " in out
    assert "provenance (the source of each value; sources, best first: structured, api, report," in out
    assert re.search(r"^  call_outcome +structured$", out, re.M)
    events = served.execute("SELECT count(*) FROM call_events WHERE call_id = %s", (BOOKING,)).fetchone()
    assert events is not None
    assert f"events ({events[0]}, in arrival order):" in out
    assert "end-of-call-report" in out
    assert out.rstrip().endswith(
        "personal data is hidden (numbers masked, transcript and summary redacted);"
        f" `ingest calls show {BOOKING} --reveal --reason TEXT` shows the originals (recorded in the access log),"
        " `ingest events show ID` an event's message."
    )


def test_show_json_hides_the_same_as_the_text(served: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """`calls show --json` prints every column as data, numbers masked and recording links left out."""
    assert main(["calls", "show", BOOKING, "--json"]) == 0
    out = capsys.readouterr().out
    shown = orjson.loads(out)
    assert shown["revealed"] is False
    assert (shown["row"]["customer_number"], shown["row"]["business_number"]) == ("•••4567", "•••1122")
    assert BOOKING_CUSTOMER not in out
    assert shown["row"]["started_at_nz"] == "2026-03-11T10:14:05.334000+00:00"
    assert shown["local"]["started_at_local"] == "2026-03-11T10:14:05.334000"
    assert shown["provenance"]["cost_total"] == "report"
    assert shown["row"]["metadata"]["recordings"]["recording_url"] == "(link not shown)"
    assert "storage.vapi.ai" not in out
    assert shown["row"]["metadata"]["analysis"]["structured_data"]["outcome"] == "appointment_booked"
    assert {event["state"] for event in shown["events"]} == {"applied"}


# -- hidden unless revealed with a reason ---------------------------------------------------------


@pytest.fixture
def personal(monkeypatch: pytest.MonkeyPatch, db_url: str, db: Conn) -> Conn:
    use_servers(monkeypatch, db_url=db_url)
    apply_bodies(db, [with_personal_data(raw) for raw in load_call("inbound_booking")])
    return db


def access_log(db: Conn) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT actor, actor_kind, action, target_kind, target, target_count, client_id, reason, details"
        " FROM data_access_log ORDER BY id"
    ).fetchall()


def test_show_hides_the_originals_and_names_their_key(personal: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --reveal the transcript and summary are the redacted ones; the sealed originals are named, not shown."""
    assert main(["calls", "show", BOOKING]) == 0
    out = capsys.readouterr().out
    assert "My email is [EMAIL] and my card is [CARD]." in out
    assert "Hemi Walker ([EMAIL]) called to book" in out
    kid = sealing_key()
    for column in ("call_transcript_original", "call_summary_original"):
        assert re.search(rf"^  {column} +sealed \(key {kid}\) — use --reveal --reason TEXT$", out, re.M), column
    for secret in (EMAIL, CARD, CARD.replace(" ", ""), BOOKING_CUSTOMER, "v1:"):
        assert secret not in out
    assert main(["calls", "show", BOOKING, "--json"]) == 0
    out = capsys.readouterr().out
    shown = orjson.loads(out)
    assert shown["row"]["call_transcript_original"] == f"sealed (key {kid})"
    assert "[EMAIL]" in shown["row"]["call_summary"]
    for secret in (EMAIL, CARD, BOOKING_CUSTOMER, "v1:"):
        assert secret not in out
    assert [entry[2] for entry in access_log(personal)] == ["view_call", "view_call"]


def test_reveal_prints_the_originals_and_records_the_reason(personal: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """--reveal --reason prints the original transcript, summary and whole numbers; one reveal entry with the reason."""
    assert main(["calls", "show", BOOKING, "--reveal", "--reason", f"  {REASON} "]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"call {BOOKING}  (revealed: the originals and whole numbers)\n")
    assert "call_transcript (original):\n  AI: Kia ora" in out
    assert f"User: Sure, it's Hemi Walker. My email is {EMAIL} and my card is {CARD}." in out
    assert f"call_summary (original):\n  Hemi Walker ({EMAIL}) called to book" in out
    assert re.search(rf"^  customer_number +{re.escape(BOOKING_CUSTOMER)}$", out, re.M)
    assert "[EMAIL]" not in out.split("call_summary (original):", 1)[1].split("provenance (", 1)[0]
    assert "this reveal is recorded in the access log, with its reason." in out
    [entry] = access_log(personal)
    assert entry == (audit.cli_actor().name, "os_user", "reveal", "call", BOOKING, 1, CLIENT, REASON, {})
    assert main(["calls", "show", BOOKING, "--json", "--reveal", "--reason", REASON]) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["revealed"] is True
    assert shown["row"]["customer_number"] == BOOKING_CUSTOMER
    assert EMAIL in shown["row"]["call_transcript_original"]
    assert shown["row"]["call_summary_original"].startswith(f"Hemi Walker ({EMAIL}) called to book")
    assert "[EMAIL]" in shown["row"]["call_summary"]  # the searchable column as stored
    assert [entry[2] for entry in access_log(personal)] == ["reveal", "reveal"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--reveal"], "--reveal needs --reason TEXT"),
        (["--reveal", "--reason", "   "], "a reveal needs a reason"),
        (["--reason", REASON], "--reason goes with --reveal"),
        (["--reveal", "--reason", "call back +64 21 123 4567"], "must not hold a phone number"),
        (["--reveal", "--reason", f"asked by {EMAIL}"], "must not hold a phone number, an e-mail address"),
    ],
    ids=["no-reason", "blank-reason", "reason-alone", "number-in-reason", "address-in-reason"],
)
def test_reveal_without_a_proper_reason_is_a_usage_error(
    personal: Conn, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    """A reveal needs a reason without personal data in it: otherwise exit 2, nothing read, shown or recorded."""
    assert main(["calls", "show", BOOKING, *flags]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert access_log(personal) == []


def test_reveal_under_a_key_not_configured_names_it(
    personal: Conn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Originals sealed under a key this process lacks: a line naming the key, exit 1, the attempt recorded."""
    sealed_under = sealing_key()
    monkeypatch.setenv("INGEST_ENCRYPTION_KEYS", generate_key())
    assert main(["calls", "show", BOOKING, "--reveal", "--reason", REASON]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        f"ingest calls show: cannot reveal call {BOOKING}: sealed under key {sealed_under},"
        " which INGEST_ENCRYPTION_KEYS does not hold: add that key to open it"
    ) in captured.err
    assert EMAIL not in captured.err
    [entry] = access_log(personal)
    assert entry[2:] == ("reveal", "call", BOOKING, 0, CLIENT, REASON, {"unopened_key": sealed_under})
    assert main(["calls", "show", BOOKING]) == 0  # the hidden view needs no key
    assert f"sealed (key {sealed_under})" in capsys.readouterr().out
