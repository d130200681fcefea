"""`ingest rebuild`: rows re-derived from call_events equal the live ones, and usage stays counted once."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
import pytest
from support.apply import PRIVACY, apply_bodies
from support.fixtures import all_calls, fixture_path, iter_bodies, load_call
from support.ops_cli import store_failed, use_servers
from support.rows import event_states, rewrite_stored_messages, session_rows, usage

from ingest.cli import main
from ingest.ops import rebuild
from ingest.ops.rebuild import ABSENT, Change, changes, rebuild_row

EXPECTED = orjson.loads(fixture_path("expected_rows.json").read_bytes())
BOOKING = "44447e38-9fd3-4025-bc93-2132b1b437d0"  # client-harbourside-dental, a reported cost
VETS = "1f7e3495-e965-493b-a783-65eadfe2fc96"  # client-kauri-vets, no cost reported, transcript from finals
SESSION = "sess_tui_7YqK2mWc9LpR4xVb"
VOICEMAIL = "29e81e6b-26b0-4097-8509-32a0d88f1a97"
NO_ANSWER = "47a000fe-d032-4a5b-8c64-48611f88498d"  # no transcripts at all
Conn = psycopg.Connection[Any]


def identities(db: Conn) -> dict[str, tuple[str, str]]:
    rows = db.execute("SELECT coalesce(call_id::text, session_id), id::text, created_at::text FROM user_sessions")
    return {key: (row_id, created) for key, row_id, created in rows.fetchall()}


def ledger(db: Conn) -> list[tuple[Any, ...]]:
    return sorted(db.execute("SELECT session_id::text, client_id, month, minutes, cost FROM session_usage_ledger"))


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    use_servers(monkeypatch, db_url=db_url)  # retention's windows are off in the suite (tests/conftest.py)


@pytest.fixture
def every_call(db: Conn) -> None:
    for path in all_calls():
        apply_bodies(db, iter_bodies(path))


def test_rebuild_all_equals_the_live_rows(
    servers: None, every_call: None, db: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every fixture call rebuilt from its events is its live row, same id and created_at; usage unchanged."""
    live, ids, counted, states = session_rows(db), identities(db), usage(db), event_states(db)
    assert live == EXPECTED["rows"]
    ledger_before = ledger(db)
    assert main(["rebuild", "--all"]) == 0
    assert capsys.readouterr().out == f"rebuilt {len(live)} rows: {len(live)} unchanged\n"
    assert session_rows(db) == live
    assert identities(db) == ids
    assert usage(db) == counted
    assert [list(u) for u in counted] == EXPECTED["usage"]
    assert ledger(db) == ledger_before
    assert event_states(db) == states


@pytest.mark.parametrize("path", all_calls(), ids=lambda path: path.stem)
def test_rebuild_each_call_from_its_events_alone(db: Conn, path: Any) -> None:
    """Each call, rebuilt on its own after its row was corrupted, is exactly the expected row again."""
    apply_bodies(db, iter_bodies(path))
    [key] = session_rows(db)
    ids, counted = identities(db), usage(db)
    db.execute("UPDATE user_sessions SET metadata = '{}', ended_reason = 'corrupted', keywords = NULL")
    result = rebuild_row(db, key, privacy=PRIVACY, transcript_grace=600)
    assert result.outcome == "changed"
    assert result.key == key
    assert session_rows(db) == {key: EXPECTED["rows"][key]}
    assert identities(db) == ids
    assert usage(db) == counted


def test_dry_run_reports_changes_and_writes_nothing(
    servers: None, every_call: None, db: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run lists each differing value (inside JSON too), exits 1 and leaves the row and usage alone."""
    db.execute(
        "UPDATE user_sessions SET call_summary = 'wrong', cost_total = 9.5,"
        " metadata = jsonb_set(metadata, '{provenance,call_summary}', '\"status\"') WHERE call_id = %s",
        (BOOKING,),
    )
    tampered, counted = session_rows(db), usage(db)
    assert main(["rebuild", "--call", BOOKING, "--dry-run"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{BOOKING}: changed (3 values)",
        "    call_summary: 'wrong' → 'Hemi Walker called to book a check-up and clean and mentioned a sore tooth. Mi…",
        "    cost_total: 9.5000 → 0.0986",
        "    metadata.provenance.call_summary: 'status' → 'report'",
        "would rebuild 1 row: 1 changed (dry run: nothing written)",
    ]
    assert session_rows(db) == tampered
    assert usage(db) == counted


def test_rebuild_repairs_a_row_and_moves_usage_back(
    servers: None, every_call: None, db: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tampered cost counted in usage is rebuilt from the report: row and usage are as before the damage."""
    db.execute("UPDATE user_sessions SET cost_total = 9.5, call_summary = NULL WHERE call_id = %s", (BOOKING,))
    assert usage(db) != [tuple(u) for u in EXPECTED["usage"]]
    assert main(["rebuild", "--call", BOOKING]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{BOOKING}: changed (2 values)"
    assert out[1].startswith("    call_summary: null → 'Hemi Walker called")
    assert out[2:] == ["    cost_total: 9.5000 → 0.0986", "rebuilt 1 row: 1 changed"]
    assert session_rows(db) == EXPECTED["rows"]
    assert [list(u) for u in usage(db)] == EXPECTED["usage"]


def test_rebuild_recreates_a_deleted_row(servers: None, every_call: None, db: Conn) -> None:
    """A row deleted by hand (its usage gone with it) is created again from its events, usage counted once."""
    db.execute("DELETE FROM user_sessions WHERE session_id = %s", (SESSION,))
    assert SESSION not in session_rows(db)
    assert main(["rebuild", "--call", SESSION, "--dry-run"]) == 1
    assert SESSION not in session_rows(db)
    assert main(["rebuild", "--call", SESSION]) == 0
    assert session_rows(db) == EXPECTED["rows"]
    assert [list(u) for u in usage(db)] == EXPECTED["usage"]


def test_rebuild_keeps_rate_plan_prices_and_usage(servers: None, db: Conn) -> None:
    """A call priced from its client's rate plan (no reported cost) is rebuilt to the same price and usage."""
    db.execute(
        "INSERT INTO client_subscriptions (client_id, plan, rate_per_minute, status)"
        " VALUES ('client-kauri-vets', 'pro', 0.35, 'active')"
    )
    apply_bodies(db, load_call("inbound_booking"))
    for path in all_calls():
        if path.stem in {"month_boundary", "dst_autumn"}:
            apply_bodies(db, iter_bodies(path))
    apply_bodies(db, iter_bodies(fixture_path("calls/no_report_finals_only.jsonl")))
    live, counted = session_rows(db), usage(db)
    assert live[VETS]["metadata"]["cost_source"] == "rate_plan"
    assert live[VETS]["cost_total"] is not None
    assert main(["rebuild", "--all"]) == 0
    assert session_rows(db) == live
    assert usage(db) == counted


def report_of(name: str) -> tuple[list[bytes], bytes]:
    """A call's bodies but its end-of-call report, and the report."""
    bodies = load_call(name)
    [report] = [raw for raw in bodies if orjson.loads(raw)["message"]["type"] == "end-of-call-report"]
    return [raw for raw in bodies if raw != report], report


def test_failed_and_discarded_events_stay_out(servers: None, db: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """The rebuilt row holds what the live one holds: a failed report, or a discarded one, is not applied."""
    others, report = report_of("outbound_no_answer")
    apply_bodies(db, others)
    report_id = store_failed(db, report, RuntimeError("the database went away"))
    live = session_rows(db)
    assert live[NO_ANSWER] != EXPECTED["rows"][NO_ANSWER]
    assert main(["rebuild", "--call", NO_ANSWER]) == 0
    assert capsys.readouterr().out == f"{NO_ANSWER}: unchanged\nrebuilt 1 row: 1 unchanged\n"
    db.execute("UPDATE call_events SET state = 'ignored' WHERE id = %s", (report_id,))
    assert main(["rebuild", "--call", NO_ANSWER]) == 0
    assert session_rows(db) == live
    assert db.execute("SELECT state FROM call_events WHERE id = %s", (report_id,)).fetchone() == ("ignored",)


def test_missing_report_transcript_is_built_as_the_sweeper_would(
    servers: None, db: Conn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A call over for 5 sweep grace periods whose report never came gets its transcript from the finals."""
    others, _ = report_of("inbound_booking")
    apply_bodies(db, others)  # the assistant expects a report, so no transcript is built yet
    assert session_rows(db)[BOOKING]["call_transcript"] is None
    monkeypatch.setenv("SWEEP_GRACE_SECONDS", str(10**8))  # 5 graces: longer ago than the call ended
    assert main(["rebuild", "--call", BOOKING]) == 0
    assert capsys.readouterr().out.startswith(f"{BOOKING}: unchanged\n")
    monkeypatch.setenv("SWEEP_GRACE_SECONDS", "120")  # the call ended months ago: the sweeper would have built it
    assert main(["rebuild", "--call", BOOKING]) == 0
    assert capsys.readouterr().out.startswith(
        f'{BOOKING}: changed (6 values)\n    call_transcript: null → "AI: Kia ora'
    )
    row = session_rows(db)[BOOKING]
    assert row["metadata"]["provenance"]["call_transcript"] == "transcripts"
    assert row["sentiment"] is not None


def test_an_event_that_no_longer_maps_fails_the_row_and_keeps_it(
    servers: None, db: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    """If one of its events no longer maps, the row is left exactly as it was and the exit status is 1."""
    apply_bodies(db, load_call("voicemail"))
    before, ids = session_rows(db), identities(db)
    rewrite_stored_messages(
        db, lambda m: {**m, "call": {**m["call"], "id": "not-a-uuid"}}, "id = (SELECT max(id) FROM call_events)"
    )
    assert main(["rebuild", "--call", VOICEMAIL]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{VOICEMAIL}: failed: Unmappable: call.id 'not-a-uuid' is not a UUID\n")
    assert out.endswith("rebuilt 1 row: 1 failed\n")
    assert session_rows(db) == before
    assert identities(db) == ids


def test_row_without_events_is_left_alone(servers: None, db: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """A row written by hand (no recorded events) is skipped, not deleted; --call makes that exit 1."""
    db.execute(
        "INSERT INTO user_sessions (call_id, assistant_id) VALUES ('0b4c2f1e-0000-4000-8000-00000000000a', %s)",
        ("afe02bab-94fe-4612-ab34-f0fba929f065",),
    )
    before = session_rows(db)
    assert main(["rebuild", "--call", "0b4c2f1e-0000-4000-8000-00000000000a"]) == 1
    assert "skipped: no recorded events" in capsys.readouterr().out
    assert main(["rebuild", "--all"]) == 0
    assert capsys.readouterr().out.endswith("rebuilt 1 row: 1 skipped\n")
    assert session_rows(db) == before
    assert main(["rebuild", "--call", "0b4c2f1e-0000-4000-8000-00000000000b"]) == 1  # neither row nor events


def test_row_without_call_or_session_id_is_skipped(
    servers: None, every_call: None, db: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    """--all reports a row with neither a call id nor a session id as skipped, rebuilds the rest and sums up."""
    assistant = "afe02bab-94fe-4612-ab34-f0fba929f065"
    [(row_id,)] = db.execute("INSERT INTO user_sessions (assistant_id) VALUES (%s) RETURNING id::text", (assistant,))
    live = session_rows(db)
    assert main(["rebuild", "--all"]) == 0
    rebuilt = len(EXPECTED["rows"])
    assert capsys.readouterr().out.splitlines() == [
        f"row {row_id}: skipped: no call or session id",
        f"rebuilt {rebuilt + 1} rows: {rebuilt} unchanged, 1 skipped",
    ]
    assert session_rows(db) == live
    assert db.execute("SELECT count(*) FROM user_sessions WHERE id = %s", (row_id,)).fetchone() == (1,)


def test_deadlocks_are_retried_then_the_row_fails_and_the_run_goes_on(
    servers: None, every_call: None, db: Conn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A serialization failure is tried again; a row that keeps deadlocking fails after 3 tries and --all goes on."""
    monkeypatch.setattr(rebuild, "CONFLICT_BACKOFF", 0.001)
    derive, tries = rebuild._derive, {BOOKING: 0, VETS: 0}

    def conflicting(conn: Conn, old: Any, events: Any, where: dict[str, Any], **kw: Any) -> Any:
        if where["call_id"] == BOOKING:
            tries[BOOKING] += 1
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        if where["call_id"] == VETS:
            tries[VETS] += 1
            if tries[VETS] == 1:
                raise psycopg.errors.SerializationFailure("could not serialize access due to concurrent update")
        return derive(conn, old, events, where, **kw)

    monkeypatch.setattr(rebuild, "_derive", conflicting)
    live, ids = session_rows(db), identities(db)
    assert main(["rebuild", "--all"]) == 1
    total = len(EXPECTED["rows"])
    assert capsys.readouterr().out.splitlines() == [
        f"{BOOKING}: failed: DeadlockDetected after 3 attempts: deadlock detected",
        f"rebuilt {total} rows: {total - 1} unchanged, 1 failed",
    ]
    assert tries == {BOOKING: 3, VETS: 2}
    assert session_rows(db) == live
    assert identities(db) == ids


def test_rebuild_needs_a_call_or_all(servers: None, capsys: pytest.CaptureFixture[str]) -> None:
    """Neither --call nor --all, or both, is a usage error."""
    assert main(["rebuild"]) == 2
    assert main(["rebuild", "--all", "--call", BOOKING]) == 2
    assert "--call ID" in capsys.readouterr().err


def test_changes_walks_into_json() -> None:
    """Differences inside JSON objects are named by their path; keys on one side only show as absent."""
    before = {"a": 1, "metadata": {"provenance": {"x": "report"}, "gone": True}}
    after = {"a": 1, "metadata": {"provenance": {"x": "status"}, "new": [1]}}
    assert changes(before, after) == [
        Change("metadata.gone", True, ABSENT),
        Change("metadata.new", ABSENT, [1]),
        Change("metadata.provenance.x", "report", "status"),
    ]
    assert changes(before, before) == []


def test_a_row_older_than_its_raw_events_are_kept_is_left_alone(db: Conn) -> None:
    """Past the raw-event window (retention may have removed some events) a row is skipped, not rebuilt from less."""
    apply_bodies(db, load_call("voicemail"))
    [key] = session_rows(db)
    db.execute("UPDATE user_sessions SET created_at = now() - interval '31 days', ended_reason = 'corrupted'")
    result = rebuild_row(db, key, privacy=PRIVACY, transcript_grace=600, retention=(30, 90))
    assert (result.outcome, result.reason) == (
        "skipped",
        "older than its raw events are kept (retention may have removed some): left as it is",
    )
    assert session_rows(db)[key]["ended_reason"] == "corrupted"
    assert rebuild_row(db, key, privacy=PRIVACY, transcript_grace=600, retention=(0, 0)).outcome == "changed"
