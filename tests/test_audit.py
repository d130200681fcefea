"""ingest.audit and `ingest audit list` against real Postgres: one row per record, in the caller's transaction;
actors; targets; the listing and its filters."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from support.ops_cli import use_servers

from ingest import audit
from ingest.cli import main
from ingest.vocabulary import AuditAction, AuditActorKind, AuditSurface, AuditTargetKind

Conn = psycopg.Connection[tuple[Any, ...]]
CALL = "44447e38-9fd3-4025-bc93-2132b1b437d0"
CLIENT = "client-harbourside-dental"
ALICE = audit.Actor("alice", AuditActorKind.OS_USER)
ONCALL = audit.Actor("oncall", AuditActorKind.OPS_USER)


def rows(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT actor, actor_kind, action, surface, target_kind, target, target_count, reason, client_id, details"
        " FROM data_access_log ORDER BY id"
    ).fetchall()


def test_record_writes_one_row_with_every_field(db: Conn) -> None:
    """Every argument lands in its column; details are stored as JSON (times as ISO 8601)."""
    audit.record(
        db,
        action=AuditAction.REVEAL,
        surface=AuditSurface.OPS,
        actor=ONCALL,
        target_kind=AuditTargetKind.CALL,
        target=CALL,
        target_count=1,
        reason="  customer asked for their transcript  ",
        client_id=CLIENT,
        details={"since": datetime(2026, 3, 1, tzinfo=UTC), "columns": ["call_transcript"]},
    )
    assert rows(db) == [
        (
            "oncall",
            "ops_user",
            "reveal",
            "ops",
            "call",
            CALL,
            1,
            "customer asked for their transcript",
            CLIENT,
            {"since": "2026-03-01T00:00:00+00:00", "columns": ["call_transcript"]},
        )
    ]


def test_record_commits_and_rolls_back_with_the_callers_transaction(db_url: str, db: Conn) -> None:
    """A row written in a transaction that rolls back is gone with it; one that commits stays."""
    with psycopg.connect(db_url) as conn:
        audit.record(conn, action=AuditAction.DISCARD, surface=AuditSurface.CLI, actor=ALICE)
        assert len(rows(db)) == 0  # not visible before its transaction commits
        conn.rollback()
        audit.record(conn, action=AuditAction.REAPPLY, surface=AuditSurface.CLI, actor=ALICE)
        conn.commit()
    assert [row[2] for row in rows(db)] == ["reapply"]


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_reveal_needs_a_reason(db: Conn, reason: str | None) -> None:
    """Recording a reveal without a reason (or with a blank one) is refused, and nothing is written."""
    with pytest.raises(ValueError, match="reason"):
        audit.record(db, action=AuditAction.REVEAL, surface=AuditSurface.CLI, actor=ALICE, reason=reason)
    assert rows(db) == []


def test_the_cli_auditor_records_the_os_user_on_the_cli_surface(db: Conn, monkeypatch: pytest.MonkeyPatch) -> None:
    """audit.cli() is the OS user (getpass: LOGNAME first) on surface cli."""
    monkeypatch.setenv("LOGNAME", "hemi")
    assert audit.cli_actor() == audit.Actor("hemi", AuditActorKind.OS_USER)
    audit.cli().record(db, AuditAction.VIEW_CALL, AuditTargetKind.CALL, CALL, target_count=0)
    assert rows(db) == [("hemi", "os_user", "view_call", "cli", "call", CALL, 0, None, None, {})]


@pytest.mark.skipif(os.geteuid() != 0, reason="taking a uid without a name needs root")
def test_a_user_without_a_name_is_its_uid() -> None:
    """With no login variables and a uid the password database does not know, the actor is uid:<n>."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: becomes such a user, answers through the pipe
        try:
            for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
                os.environ.pop(name, None)
            os.setuid(54321)
            os.write(write, audit.cli_actor().name.encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as answer:
        assert answer.read() == "uid:54321"


def test_targets_given_by_id() -> None:
    """One id is the item itself; several are bulk with their number and the first 100 ids; repeats count once."""
    assert audit.by_ids(AuditTargetKind.EVENT, [7, 7]) == {
        "target_kind": AuditTargetKind.EVENT,
        "target": "7",
        "target_count": 1,
        "details": {},
    }
    many = audit.by_ids(AuditTargetKind.DEAD_LETTER, [f"id-{n}" for n in range(150)] + ["id-0"])
    assert (many["target_kind"], many["target"], many["target_count"]) == (AuditTargetKind.BULK, None, 150)
    assert many["details"]["ids"] == [f"id-{n}" for n in range(100)]


def test_call_targets() -> None:
    """A UUID in any case is a call, canonical; anything else is a session id, stripped."""
    assert audit.call_target(f" {CALL.upper()} ") == (AuditTargetKind.CALL, CALL)
    assert audit.call_target(" sess_tui_7YqK2mWc9LpR4xVb ") == (AuditTargetKind.SESSION, "sess_tui_7YqK2mWc9LpR4xVb")


@pytest.fixture
def history(db: Conn) -> Conn:
    """Five entries: a call viewed twice (CLI, ops), one of its events viewed, a bulk list, an old reapply."""
    cli = audit.Auditor(AuditSurface.CLI, ALICE)
    ops = audit.Auditor(AuditSurface.OPS, ONCALL)
    cli.record(db, AuditAction.REAPPLY, AuditTargetKind.EVENT, "3", target_count=1)
    db.execute("SELECT pg_sleep(0.01)")
    cli.record(db, AuditAction.VIEW_CALL, AuditTargetKind.CALL, CALL, target_count=1)
    ops.record(db, AuditAction.VIEW_CALL, AuditTargetKind.CALL, CALL, target_count=1)
    ops.record(db, AuditAction.VIEW_EVENT, AuditTargetKind.EVENT, "17", target_count=1, details={"call": CALL})
    cli.record(db, AuditAction.LIST_CALLS, AuditTargetKind.BULK, target_count=4)
    return db


def test_list_entries_newest_first_and_filtered(history: Conn) -> None:
    """--call finds the call's entries and its events'; actor, action, since and limit narrow the list."""
    everything = audit.list_entries(history)
    assert [(e.action, e.actor) for e in everything] == [
        ("list_calls", "alice"),
        ("view_event", "oncall"),
        ("view_call", "oncall"),
        ("view_call", "alice"),
        ("reapply", "alice"),
    ]
    assert [e.action for e in audit.list_entries(history, call=CALL.upper())] == [
        "view_event",
        "view_call",
        "view_call",
    ]
    assert [e.action for e in audit.list_entries(history, actor="oncall")] == ["view_event", "view_call"]
    assert [e.actor for e in audit.list_entries(history, action=AuditAction.VIEW_CALL)] == ["oncall", "alice"]
    assert len(audit.list_entries(history, since=everything[3].at)) == 4
    assert audit.list_entries(history, since=datetime.now(UTC) + timedelta(minutes=1)) == []
    assert [e.action for e in audit.list_entries(history, limit=1)] == ["list_calls"]
    assert everything[1].as_dict()["at"] == everything[1].at.isoformat()
    with pytest.raises(ValueError, match="limit"):
        audit.list_entries(history, limit=0)


# -- ingest audit list --------------------------------------------------------------------------


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch, db_url: str, db: Conn) -> Conn:
    """Four entries: hemi viewed the booking and one of its events, listed calls; oncall reapplied 8 days ago."""
    use_servers(monkeypatch, db_url=db_url)
    hemi = audit.Auditor(AuditSurface.CLI, audit.Actor("hemi", AuditActorKind.OS_USER))
    hemi.record(db, AuditAction.VIEW_CALL, AuditTargetKind.CALL, CALL, target_count=1, client_id=CLIENT)
    hemi.record(db, AuditAction.VIEW_EVENT, AuditTargetKind.EVENT, "17", target_count=1, details={"call": CALL})
    hemi.record(db, AuditAction.LIST_CALLS, AuditTargetKind.BULK, target_count=12)
    db.execute(
        "INSERT INTO data_access_log (at, actor, actor_kind, action, surface, target_kind, target, target_count)"
        " VALUES (now() - interval '8 days', 'oncall', 'ops_user', 'reapply', 'ops', 'event', '17', 1)"
    )
    return db


def listed(capsys: pytest.CaptureFixture[str], *options: str) -> list[dict[str, Any]]:
    assert main(["audit", "list", *options, "--json"]) == 0
    found: list[dict[str, Any]] = orjson.loads(capsys.readouterr().out)
    return found


def test_list_prints_a_table_newest_first(logged: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """The table has who, when, where, what and how many, newest first."""
    assert main(["audit", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "AT", "ACTOR", "SURFACE", "ACTION", "TARGET", "COUNT", "CLIENT", "REASON"]
    assert lines[1].split()[3:] == ["hemi", "cli", "list_calls", "bulk", "12", "-", "-"]
    assert lines[3].split()[3:] == ["hemi", "cli", "view_call", "call", CALL, "1", CLIENT, "-"]
    assert lines[4].split()[3:] == ["oncall", "ops", "reapply", "event", "17", "1", "-", "-"]
    assert len(lines) == 5
    assert main(["audit", "list", "--limit", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "(the newest 2; --limit for more)"


def test_list_filters_and_json(logged: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """--call (the call and its events), --actor, --action and --since narrow the list; --json gives every column."""
    by_call = listed(capsys, "--call", CALL.upper())
    assert [(e["action"], e["target"]) for e in by_call] == [("view_event", "17"), ("view_call", CALL)]
    assert by_call[1] | {"id": 0, "at": ""} == {
        "id": 0,
        "at": "",
        "actor": "hemi",
        "actor_kind": "os_user",
        "action": "view_call",
        "surface": "cli",
        "target_kind": "call",
        "target": CALL,
        "target_count": 1,
        "reason": None,
        "client_id": CLIENT,
        "db_role": "postgres",
        "details": {},
    }
    assert [e["action"] for e in listed(capsys, "--actor", "oncall")] == ["reapply"]
    assert [e["actor"] for e in listed(capsys, "--action", "reapply")] == ["oncall"]
    assert len(listed(capsys, "--since", "7d")) == 3
    assert [e["action"] for e in listed(capsys, "--since", "7d", "--actor", "hemi", "--action", "view_call")] == [
        "view_call"
    ]
    assert main(["audit", "list", "--actor", "nobody"]) == 0
    assert capsys.readouterr().out == "no entries matching the filters\n"


@pytest.mark.parametrize("options", [["--action", "peek"], ["--since", "last week"], ["--limit", "0"]])
def test_bad_options_are_usage_errors(logged: Conn, capsys: pytest.CaptureFixture[str], options: list[str]) -> None:
    """An unknown action, an unreadable time or a limit below 1 is refused before anything runs."""
    with pytest.raises(SystemExit) as exited:
        main(["audit", "list", *options])
    assert exited.value.code == 2
