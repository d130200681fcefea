"""`ingest events` and ingest.ops.events against real Postgres: list, show, re-apply, discard."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
import redis
from psycopg_pool import ConnectionPool
from support.apply import PRIVACY, apply_bodies
from support.fixtures import fixture_path, load_call, load_event
from support.ops_cli import RECEIVED_AT_MS, store_failed, store_pending, use_servers
from support.ops_page_data import dead_letter
from support.rows import rewrite_stored_messages, session_rows, stored_messages

from ingest.cli import main
from ingest.cli.output import parse_since
from ingest.errors import Unmappable
from ingest.ops import events
from ingest.ops.backlog import event_stats
from ingest.ops.dead_letters import dead_letter_ids
from ingest.ops.reveal import hidden_json
from ingest.sealing import generate_key
from ingest.vocabulary import EventState

EXPECTED = orjson.loads(fixture_path("expected_rows.json").read_bytes())
BOOKING = "44447e38-9fd3-4025-bc93-2132b1b437d0"
BAD_CALL = "call_8e21f0f7b3c94d6a"
CUSTOMER = "+64211234567"
REPORT_ERROR = "OperationalError: the database went away\nwhile applying the report"
Conn = psycopg.Connection[Any]


def kind(raw: bytes) -> str:
    return str(orjson.loads(raw)["message"]["type"])


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    use_servers(monkeypatch, db_url=db_url)


@pytest.fixture
def booking_report_failed(db: Conn) -> int:
    """The booking call applied but for its report, which failed (the database went away)."""
    bodies = load_call("inbound_booking")
    apply_bodies(db, [raw for raw in bodies if kind(raw) != "end-of-call-report"])
    [report] = [raw for raw in bodies if kind(raw) == "end-of-call-report"]
    return store_failed(db, report, RuntimeError(REPORT_ERROR))


@pytest.fixture
def unmappable(db: Conn) -> int:
    """An event whose call id is not a UUID, failed for good."""
    return store_failed(db, load_event("status_update_bad_call_id"), Unmappable(f"call.id {BAD_CALL!r} is not a UUID"))


def state_of(db: Conn, event_id: int) -> tuple[str, int, str | None]:
    row = db.execute("SELECT state, attempts, last_error FROM call_events WHERE id = %s", (event_id,)).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


# -- list ---------------------------------------------------------------------------------------


def test_list_api_separates_unfinished_from_failed(db: Conn, booking_report_failed: int, unmappable: int) -> None:
    """Unfinished events and failed ones are two lists; failed ones carry their error's first line, newest first."""
    pending = store_pending(db, load_call("voicemail")[0], received_at_ms=RECEIVED_AT_MS + 60_000)
    assert [e.id for e in events.list_events(db)] == [pending]
    failed = events.list_events(db, failed=True)
    assert [e.id for e in failed] == [unmappable, booking_report_failed]  # same received time: higher id first
    report = failed[1]
    assert report.state is EventState.FAILED
    assert report.message_type == "end-of-call-report"
    assert report.key == BOOKING
    assert report.attempts == 1
    assert report.error == "RuntimeError: OperationalError: the database went away"
    assert report.received_at == datetime.fromtimestamp(RECEIVED_AT_MS / 1000, UTC)
    assert orjson.loads(orjson.dumps(report.as_dict()))["received_at"] == report.received_at.isoformat()


def test_list_filters(db: Conn, booking_report_failed: int, unmappable: int) -> None:
    """--type, --call (call or session id, any case), --since and --limit narrow the list."""
    assert [e.id for e in events.list_events(db, failed=True, message_type="status-update")] == [unmappable]
    assert [e.id for e in events.list_events(db, failed=True, call=BOOKING.upper())] == [booking_report_failed]
    assert [e.id for e in events.list_events(db, failed=True, call=BAD_CALL)] == [unmappable]
    received = datetime.fromtimestamp(RECEIVED_AT_MS / 1000, UTC)
    assert len(events.list_events(db, failed=True, since=received)) == 2
    assert events.list_events(db, failed=True, since=received + timedelta(seconds=1)) == []
    assert len(events.list_events(db, failed=True, limit=1)) == 1
    with pytest.raises(ValueError, match="limit"):
        events.list_events(db, limit=0)


def test_list_command_table_and_json(
    servers: None, capsys: pytest.CaptureFixture[str], booking_report_failed: int, unmappable: int
) -> None:
    """`events list --failed` prints a table with the error's first line; --json prints the same events."""
    assert main(["events", "list", "--failed"]) == 0
    out = capsys.readouterr().out
    header, *lines = out.splitlines()
    assert header.split() == ["ID", "RECEIVED", "TYPE", "CALL/SESSION", "STATE", "ATTEMPTS", "ERROR"]
    [report_line] = [line for line in lines if line.lstrip().startswith(f"{booking_report_failed} ")]
    assert "end-of-call-report" in report_line
    assert BOOKING in report_line
    assert "failed" in report_line
    assert report_line.endswith("RuntimeError: OperationalError: the database went away")
    assert "while applying" not in out  # first line only
    assert main(["events", "list", "--failed", "--type", "status-update", "--json"]) == 0
    [listed] = orjson.loads(capsys.readouterr().out)
    assert (listed["id"], listed["state"], listed["call_id"]) == (unmappable, "failed", BAD_CALL)
    assert main(["events", "list"]) == 0
    assert capsys.readouterr().out.strip() == "no pending or waiting events"
    assert main(["events", "list", "--failed", "--since", "1d"]) == 0  # received days ago (RECEIVED_AT_MS)
    assert capsys.readouterr().out.strip() == "no failed events"


def test_since_accepts_relative_and_iso_times() -> None:
    """--since takes 10m, 2h, 1d, 1w or an ISO time; an ISO time without offset is UTC."""
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert parse_since("10m", now=now) == now - timedelta(minutes=10)
    assert parse_since("2h", now=now) == now - timedelta(hours=2)
    assert parse_since("1d", now=now) == now - timedelta(days=1)
    assert parse_since("1w", now=now) == now - timedelta(weeks=1)
    assert parse_since("2026-11-01T00:00:00Z") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01 13:00") == datetime(2026, 11, 1, 13, tzinfo=UTC)
    assert parse_since("2026-11-01T13:00+13:00") == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="relative"):
        parse_since("yesterday")


def test_bad_since_is_a_usage_error(servers: None, capsys: pytest.CaptureFixture[str]) -> None:
    """An unreadable --since stops argparse with status 2 and says what it takes."""
    with pytest.raises(SystemExit) as stopped:
        main(["events", "list", "--since", "last tuesday"])
    assert stopped.value.code == 2
    assert "10m, 2h, 1d" in capsys.readouterr().err


def test_list_api_takes_any_states(db: Conn, booking_report_failed: int, unmappable: int) -> None:
    """states= lists events in any state (applied, ignored too); failed=True adds the failed ones."""
    applied = events.list_events(db, states=[EventState.APPLIED], call=BOOKING, limit=1000)
    stored = db.execute("SELECT count(*) FROM call_events WHERE call_id = %s AND state = 'applied'", (BOOKING,))
    assert stored.fetchone() == (len(applied),)
    assert applied
    assert {e.state for e in applied} == {EventState.APPLIED}
    events.discard(db, [unmappable])
    assert [e.id for e in events.list_events(db, states=["ignored"])] == [unmappable]
    both = events.list_events(db, states=["ignored"], failed=True)
    assert [e.id for e in both] == [unmappable, booking_report_failed]
    assert [e.id for e in events.list_events(db, states=["failed", "ignored"])] == [e.id for e in both]
    with pytest.raises(ValueError, match="bogus"):
        events.list_events(db, states=["bogus"])


def test_list_command_filters_by_state(
    servers: None, capsys: pytest.CaptureFixture[str], booking_report_failed: int, unmappable: int
) -> None:
    """--state takes any state, repeated or comma-separated; an unknown state is a usage error."""
    assert main(["events", "list", "--state", "applied", "--call", BOOKING, "--limit", "1000", "--json"]) == 0
    listed = orjson.loads(capsys.readouterr().out)
    assert listed
    assert {event["state"] for event in listed} == {"applied"}
    assert booking_report_failed not in {event["id"] for event in listed}
    assert main(["events", "list", "--state", "failed,applied", "--limit", "1000", "--json"]) == 0
    comma = orjson.loads(capsys.readouterr().out)
    assert main(["events", "list", "--state", "applied", "--state", "FAILED", "--limit", "1000", "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == comma
    assert {event["state"] for event in comma} == {"applied", "failed"}
    assert len(comma) == len(listed) + 2
    assert main(["events", "list", "--state", "ignored"]) == 0
    assert capsys.readouterr().out.strip() == "no ignored events"
    assert main(["events", "list", "--state", "ignored", "--failed", "--type", "nothing"]) == 0
    assert capsys.readouterr().out.strip() == "no failed or ignored events"
    with pytest.raises(SystemExit) as stopped:
        main(["events", "list", "--state", "applied,done"])
    assert stopped.value.code == 2
    assert "a state is one of pending, waiting, applied, failed, ignored" in capsys.readouterr().err


# -- show ---------------------------------------------------------------------------------------


def test_show_prints_error_and_message(
    servers: None, capsys: pytest.CaptureFixture[str], db: Conn, booking_report_failed: int
) -> None:
    """`events show ID` prints the whole error and the message as indented JSON, personal data hidden; --json too."""
    assert main(["events", "show", str(booking_report_failed)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"event {booking_report_failed}\n")
    assert "RuntimeError: OperationalError: the database went away\n  while applying the report" in out
    assert '\n  "type": "end-of-call-report",' in out
    hint = f"`ingest events show {booking_report_failed} --reveal --reason TEXT` prints it as received"
    message = orjson.loads(out.split(f"message (personal data hidden; {hint}):\n", 1)[1])
    assert message["call"]["id"] == BOOKING  # ids are kept
    assert message["customer"]["number"] == "[PHONE]"
    assert CUSTOMER not in out
    assert CUSTOMER[1:] not in out
    assert main(["events", "show", str(booking_report_failed), "--json"]) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["last_error"] == f"RuntimeError: {REPORT_ERROR}"
    assert shown["message"] == message
    assert (shown["state"], shown["revealed"]) == ("failed", False)
    assert shown["dedupe_key"]
    detail = events.get_event(db, booking_report_failed, PRIVACY)
    assert detail is not None
    assert detail.message["customer"]["number"] == CUSTOMER  # kept whole: only the view hides it
    assert hidden_json(detail.message, "NZ") == message


def test_show_hides_every_string_of_the_message(
    servers: None, capsys: pytest.CaptureFixture[str], db: Conn, booking_report_failed: int
) -> None:
    """Addresses, card and spoken numbers anywhere in the message are placeholders; numbers masked as the page does."""
    said = "mail hemi.walker@example.co.nz, card 4111 1111 1111 1111, or oh two one one two three four five six seven"
    rewrite_stored_messages(
        db,
        lambda m: {**m, "note": said, "hemi.walker@example.co.nz": "+64 21 123 4567"},
        "id = %s",
        (booking_report_failed,),
    )
    assert main(["events", "show", str(booking_report_failed), "--json"]) == 0
    out = capsys.readouterr().out
    shown = orjson.loads(out)["message"]
    assert shown["note"] == "mail [EMAIL], card [CARD], or [PHONE]"
    assert shown["•••@•••"] == "[PHONE]"
    for secret in ("hemi.walker", "4111", "oh two one", "+64 21 123 4567", "1234567", CUSTOMER):
        assert secret not in out


def test_reveal_prints_the_message_as_received(
    servers: None, capsys: pytest.CaptureFixture[str], db: Conn, booking_report_failed: int
) -> None:
    """--reveal --reason prints the message exactly as received, once recorded as a reveal with its reason."""
    reason = "ticket OPS-17: replaying the report by hand"
    assert main(["events", "show", str(booking_report_failed), "--reveal", "--reason", reason]) == 0
    out = capsys.readouterr().out
    header = "message (as received; this reveal is recorded in the access log, with its reason):\n"
    [received] = stored_messages(db, "id = %s", (booking_report_failed,))
    assert orjson.loads(out.split(header, 1)[1]) == received
    assert main(["events", "show", str(booking_report_failed), "--reveal", "--reason", reason, "--json"]) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert (shown["message"], shown["revealed"]) == (received, True)
    entries = db.execute(
        "SELECT action, target_kind, target, target_count, reason, details FROM data_access_log ORDER BY id"
    ).fetchall()
    assert entries == [("reveal", "event", str(booking_report_failed), 1, reason, {"call": BOOKING})] * 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--reveal"], "--reveal needs --reason TEXT"),
        (["--reveal", "--reason", ""], "a reveal needs a reason"),
        (["--reason", "why"], "--reason goes with --reveal"),
        (["--reveal", "--reason", f"customer {CUSTOMER}"], "must not hold a phone number"),
    ],
    ids=["no-reason", "empty-reason", "reason-alone", "number-in-reason"],
)
def test_reveal_without_a_proper_reason_is_a_usage_error(
    servers: None,
    capsys: pytest.CaptureFixture[str],
    db: Conn,
    booking_report_failed: int,
    flags: list[str],
    message: str,
) -> None:
    """A reveal without a usable reason is exit 2: nothing shown, nothing recorded."""
    assert main(["events", "show", str(booking_report_failed), *flags]) == 2
    captured = capsys.readouterr()
    assert (captured.out, message in captured.err) == ("", True)
    assert db.execute("SELECT count(*) FROM data_access_log").fetchone() == (0,)


def test_a_message_under_a_key_not_configured_names_it(
    servers: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], booking_report_failed: int
) -> None:
    """A message sealed under a key this process lacks: a line naming the key, exit 1, nothing crashes."""
    sealed_under = os.environ["INGEST_ENCRYPTION_KEYS"].split(":", 1)[0]
    monkeypatch.setenv("INGEST_ENCRYPTION_KEYS", generate_key())
    for flags in ([], ["--reveal", "--reason", "ticket OPS-17"]):
        assert main(["events", "show", str(booking_report_failed), *flags]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert f"cannot open the message of event {booking_report_failed}: sealed under key '{sealed_under}'" in (
            captured.err
        )


def test_show_unknown_event(servers: None, capsys: pytest.CaptureFixture[str], db: Conn) -> None:
    """An id that is not recorded is exit status 1 with a message, and get_event answers None."""
    assert main(["events", "show", "424242"]) == 1
    assert "no event 424242" in capsys.readouterr().err
    assert events.get_event(db, 424242, PRIVACY) is None


# -- reapply ------------------------------------------------------------------------------------


def test_reapply_failed_report_makes_the_row_right(
    servers: None, capsys: pytest.CaptureFixture[str], db: Conn, booking_report_failed: int
) -> None:
    """Re-applying the failed report prints "applied 1 of 1" and the row becomes the expected one."""
    assert session_rows(db)[BOOKING] != EXPECTED["rows"][BOOKING]
    assert main(["events", "reapply", str(booking_report_failed)]) == 0
    assert capsys.readouterr().out == "applied 1 of 1\n"
    assert session_rows(db)[BOOKING] == EXPECTED["rows"][BOOKING]
    state, attempts, error = state_of(db, booking_report_failed)
    assert (state, attempts, error) == ("applied", 2, None)
    assert event_stats(db).failed == 0


def test_reapply_by_filters_takes_what_list_shows(
    servers: None, capsys: pytest.CaptureFixture[str], db: Conn, booking_report_failed: int, unmappable: int
) -> None:
    """`reapply --failed --call ID` re-applies exactly the events `list` shows for the same filters."""
    assert main(["events", "reapply", "--failed", "--call", BOOKING]) == 0
    assert capsys.readouterr().out == "applied 1 of 1\n"
    assert session_rows(db)[BOOKING] == EXPECTED["rows"][BOOKING]
    assert state_of(db, unmappable)[0] == "failed"


def failed_status_updates(db: Conn, count: int) -> list[int]:
    """``count`` distinct failed events of the booking call (its first status update, later each time; 4 per ms)."""
    first = orjson.loads(load_call("inbound_booking")[0])
    ids = []
    for offset in range(count):
        first["message"]["timestamp"] += 1
        raw = orjson.dumps(first)
        ids.append(
            store_failed(db, raw, RuntimeError("deadlock detected"), received_at_ms=RECEIVED_AT_MS + offset // 4)
        )
    return ids


def test_reapply_by_filters_takes_every_matching_event(
    servers: None, capsys: pytest.CaptureFixture[str], db: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reapply --failed` takes every failed event, past list's 50 and page after page; --limit N the newest N."""
    monkeypatch.setattr(events, "ID_PAGE", 7)
    ids = failed_status_updates(db, 60)
    assert events.matching_event_ids(db, failed=True) == ids[::-1]
    assert events.matching_event_ids(db, failed=True, limit=9) == ids[:-10:-1]
    assert main(["events", "reapply", "--failed", "--limit", "12"]) == 0
    assert capsys.readouterr().out == "applied 12 of 12\n"
    assert {state_of(db, event_id)[0] for event_id in ids[-12:]} == {"applied"}
    assert {state_of(db, event_id)[0] for event_id in ids[:-12]} == {"failed"}
    assert main(["events", "reapply", "--failed", "--type", "status-update"]) == 0
    assert capsys.readouterr().out == "applied 48 of 48\n"
    assert event_stats(db).failed == 0


def test_reapply_reports_each_failure_and_exits_non_zero(
    servers: None, capsys: pytest.CaptureFixture[str], db: Conn, unmappable: int, booking_report_failed: int
) -> None:
    """An event that fails again is recorded failed again (attempts + 1) and named with its error; exit 1."""
    code = main(["events", "reapply", str(unmappable), str(booking_report_failed), "999999"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[0] == "applied 1 of 3"
    assert lines[1] == f"  event {unmappable}: Unmappable: call.id '{BAD_CALL}' is not a UUID"
    assert lines[2] == "  event 999999: no such event"
    state, attempts, error = state_of(db, unmappable)
    assert (state, attempts) == ("failed", 2)
    assert error is not None
    assert "not a UUID" in error


def test_reapply_api_outcomes(db_url: str, db: Conn, booking_report_failed: int) -> None:
    """Already applied counts as applied; an event still without a row stays waiting and is a failure."""
    first = load_call("assistant_request_first")[0]  # the assistant request: no event has named the assistant yet
    waiting = store_pending(db, first)
    applied = int(db.execute("SELECT min(id) FROM call_events WHERE state = 'applied'").fetchone()[0])  # type: ignore[index]
    with ConnectionPool(db_url, min_size=1, max_size=2) as pool:
        result = events.reapply(pool, [applied, waiting, applied, booking_report_failed], privacy=PRIVACY)
    assert (result.applied, result.total) == (2, 3)  # ids are taken once each
    assert [event_id for event_id, _ in result.failures] == [waiting]
    assert result.failures[0][1].startswith("waiting")
    assert state_of(db, waiting)[0] == "waiting"
    assert not result.ok


def test_reapply_needs_ids_or_filters(servers: None, capsys: pytest.CaptureFixture[str]) -> None:
    """Neither ids nor filters (or both) is a usage error, not "every event"."""
    assert main(["events", "reapply"]) == 2
    assert "give event ids, or filters" in capsys.readouterr().err
    assert main(["events", "reapply", "1", "--failed"]) == 2


# -- discard ------------------------------------------------------------------------------------


@pytest.fixture
def servers_and_queue(
    monkeypatch: pytest.MonkeyPatch, db_url: str, redis_server_url: str, redis_namespace: str
) -> None:
    use_servers(monkeypatch, db_url=db_url, redis_url=redis_server_url, namespace=redis_namespace)


def test_discard_marks_failed_events_ignored(
    servers_and_queue: None, capsys: pytest.CaptureFixture[str], db: Conn, unmappable: int
) -> None:
    """A discarded failed event is ignored with its error kept; a pending one is left alone (exit 1)."""
    pending = store_pending(db, load_call("voicemail")[0])
    assert main(["events", "discard", str(unmappable), str(pending)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("discarded 1 of 2\n")
    state, _, error = state_of(db, unmappable)
    assert state == "ignored"
    assert error is not None
    assert "not a UUID" in error
    assert state_of(db, pending)[0] == "pending"
    assert event_stats(db).failed == 0
    assert events.discard(db, [unmappable]) == 0  # already discarded
    assert events.discard(db, []) == 0


def test_discard_deletes_the_events_dead_letter(
    servers_and_queue: None, db: Conn, unmappable: int, redis_server_url: str, redis_namespace: str
) -> None:
    """`events discard` removes the discarded event's dead letter and leaves another event's alone."""
    dead_letter(redis_server_url, redis_namespace, load_event("status_update_bad_call_id"))
    other = dead_letter(redis_server_url, redis_namespace, load_call("voicemail")[0])
    assert main(["events", "discard", str(unmappable)]) == 0
    client = redis.Redis.from_url(redis_server_url)
    assert dead_letter_ids(client, redis_namespace, "vapi-events") == [other]
    client.close()
