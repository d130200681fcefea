"""``ingest reconcile``: the summary and its exit status; ``ingest queue`` shows the last run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from support.ops_cli import use_servers
from support.rows import PRIVACY
from support.vapi_api import API_KEY, FakeVapi, make_call, serve_vapi

from ingest.apply import apply_event
from ingest.cli import main
from ingest.errors import Unmappable
from ingest.event import Event
from ingest.handlers import HANDLERS
from ingest.ops import reconcile_runs

Conn = psycopg.Connection[Any]
NOW = datetime.now(UTC)
ASSISTANT = "5b0a4a08-133c-4146-9315-0984f8c6be80"
PHONE_NUMBER = "0d6f4a4e-8d0c-4a3b-9e3e-7f1f3c1b2a10"
CALLER = "+6421555012"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[FakeVapi]:
    """The stand-in, with an ended call no webhook announced and one whose report arrived."""
    stand_in = FakeVapi()
    with serve_vapi(stand_in) as url:
        use_servers(monkeypatch, db_url=db_url)
        monkeypatch.setenv("VAPI_API_KEY", API_KEY)
        monkeypatch.setenv("VAPI_API_URL", url)
        yield stand_in


def _calls(fake: FakeVapi, db: Conn) -> tuple[dict[str, Any], dict[str, Any]]:
    silent = make_call(created_at=NOW - timedelta(hours=20), customer_number=CALLER)
    whole = make_call(created_at=NOW - timedelta(hours=10), customer_number=CALLER)
    fake.add(silent, whole)
    fields = ("startedAt", "endedAt", "endedReason", "cost", "costs", "analysis", "artifact")
    snapshot = {key: whole[key] for key in ("id", "orgId", "type", "assistantId", "phoneNumberId", "customer")}
    message = {"type": "end-of-call-report", "call": snapshot, **{key: whole[key] for key in fields}}
    apply_event(db, Event(message, datetime.now(UTC)), PRIVACY)
    return silent, whole


def _rows(db: Conn) -> int:
    row = db.execute("SELECT count(*) FROM user_sessions").fetchone()
    assert row is not None
    return int(row[0])


def test_summary_lists_the_missing_call_with_its_assistant(
    fake: FakeVapi, db: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    """The summary counts each result and lists the missing call with its assistant and phone number, no caller."""
    silent, whole = _calls(fake, db)
    assert main(["reconcile", "--since", "24h"]) == 0
    out = capsys.readouterr().out
    assert "reconciled 2 call(s)" in out
    assert "1 complete, 0 filled, 1 missing" in out
    assert silent["id"] in out
    assert whole["id"] not in out
    assert ASSISTANT in out
    assert PHONE_NUMBER in out
    assert "Server URL" in out
    assert CALLER not in out
    assert _rows(db) == 2
    assert main(["reconcile", "--from", (NOW - timedelta(days=1)).isoformat(), "--json"]) == 0
    again = orjson.loads(capsys.readouterr().out)
    assert again["counts"] == {"complete": 2, "filled": 0, "missing": 0, "erased": 0, "failed": 0}
    assert again["gaps"] == []


def test_dry_run_applies_nothing(fake: FakeVapi, db: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run prints what would be done and leaves the rows and the run log as they were."""
    _calls(fake, db)
    assert main(["reconcile", "--dry-run", "--json"]) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["dry_run"] is True
    assert shown["counts"]["missing"] == 1
    assert _rows(db) == 1
    assert reconcile_runs.last_run(db) is None


def test_one_call(fake: FakeVapi, db: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """--call reconciles one call; a call the API does not know exits 1, a malformed id 2."""
    silent, _ = _calls(fake, db)
    assert main(["reconcile", "--call", silent["id"]]) == 0
    assert "1 missing" in capsys.readouterr().out
    assert _rows(db) == 2
    assert main(["reconcile", "--call", "00000000-0000-4000-8000-000000000000"]) == 1
    assert "has no call" in capsys.readouterr().err
    assert main(["reconcile", "--call", "nope"]) == 2


def test_a_dead_api_exits_non_zero_and_touches_nothing(
    fake: FakeVapi, db: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    """500s past the bounded tries: a clear error, exit 1, no row added, the failure in the run log."""
    _calls(fake, db)
    fake.fail(20)
    assert main(["reconcile", "--since", "2d"]) == 1
    err = capsys.readouterr().err
    assert "Vapi's API could not be read" in err
    assert API_KEY not in err
    assert _rows(db) == 1
    last = reconcile_runs.last_run(db)
    assert last is not None
    assert last.error is not None


def test_without_a_key_it_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No VAPI_API_KEY: exit 2 naming the variable; a window ending before it starts is refused too."""
    use_servers(monkeypatch, db_url=db_url)
    monkeypatch.delenv("VAPI_API_KEY", raising=False)
    assert main(["reconcile"]) == 2
    assert "VAPI_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("VAPI_API_KEY", API_KEY)
    assert main(["reconcile", "--since", "1h", "--until", "2h"]) == 2


def test_queue_shows_the_last_run(
    fake: FakeVapi,
    db: Conn,
    monkeypatch: pytest.MonkeyPatch,
    db_url: str,
    redis_server_url: str,
    redis_namespace: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After a run, ``ingest queue`` prints its counts and the call that reached us only through it."""
    use_servers(monkeypatch, db_url=db_url, redis_url=redis_server_url, namespace=redis_namespace)
    assert main(["queue"]) == 0
    assert "reconciliation: never run" in capsys.readouterr().out
    _calls(fake, db)
    assert main(["reconcile"]) == 0
    capsys.readouterr()
    assert main(["queue"]) == 0
    out = capsys.readouterr().out
    assert "reconciliation: last run" in out
    assert "1 complete, 0 filled, 1 missing" in out
    assert "1 call(s) in the last 24 h reached us only through reconciliation" in out
    assert main(["queue", "--json"]) == 0
    shown = orjson.loads(capsys.readouterr().out)["reconciliation"]
    assert shown["last_run"]["counts"]["missing"] == 1
    assert shown["only_reconciled"] == 1


def _since(seen: Any, name: str) -> datetime:
    return datetime.fromisoformat(seen.params[name].replace("Z", "+00:00"))


def test_the_default_window_is_the_trailing_48_hours(fake: FakeVapi, db: Conn) -> None:
    """Without --since/--from/--until the calls listed are those updated in the last RECONCILE_WINDOW_HOURS (48)."""
    _calls(fake, db)
    before = datetime.now(UTC)
    assert main(["reconcile"]) == 0
    after = datetime.now(UTC)
    seen = fake.list_requests[0]
    assert before - timedelta(hours=48, seconds=1) <= _since(seen, "updatedAtGt") <= after - timedelta(hours=48)
    assert before <= _since(seen, "updatedAtLt") <= after + timedelta(seconds=1)
    last = reconcile_runs.last_run(db)
    assert last is not None
    assert last.window_end - last.window_start == timedelta(hours=48)


def test_until_ends_the_window(fake: FakeVapi, db: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """--since 24h --until 1h reads the calls updated in between only: the newer call is left for later."""
    older = make_call(created_at=NOW - timedelta(hours=20))
    newer = make_call(created_at=NOW - timedelta(minutes=10))
    fake.add(older, newer)
    assert main(["reconcile", "--since", "24h", "--until", "1h"]) == 0
    assert "reconciled 1 call(s)" in capsys.readouterr().out
    assert {row[0] for row in db.execute("SELECT call_id::text FROM user_sessions")} == {older["id"]}
    until = _since(fake.list_requests[0], "updatedAtLt")
    assert abs(until - (datetime.now(UTC) - timedelta(hours=1))) < timedelta(minutes=1)
    last = reconcile_runs.last_run(db)
    assert last is not None
    assert abs(last.window_end - (datetime.now(UTC) - timedelta(hours=1))) < timedelta(minutes=1)


GARBAGE_ID = "+6421555012 not-a-uuid"


def test_malformed_calls_are_listed_failed_and_exit_1(
    fake: FakeVapi,
    db: Conn,
    monkeypatch: pytest.MonkeyPatch,
    db_url: str,
    redis_server_url: str,
    redis_namespace: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A good call, a Call with a 300-character client id, one whose id is no UUID: the good ones land, the bad
    ones are listed failed (the id only when a UUID, the error's class and reason), exit 1 pointing at
    `ingest events list --failed`; the run is recorded and `ingest queue` shows its failed count."""
    silent, whole = _calls(fake, db)
    long_client = make_call(created_at=NOW - timedelta(hours=15), metadata={"client_id": "x" * 300})
    garbage = make_call(created_at=NOW - timedelta(hours=5))
    garbage["id"] = GARBAGE_ID
    fake.add(long_client, garbage)
    assert main(["reconcile", "--dry-run"]) == 1
    dry = capsys.readouterr()
    assert "0 erased, 2 failed" in dry.out
    assert "nothing recorded" in dry.err
    assert reconcile_runs.last_run(db) is None
    assert main(["reconcile"]) == 1
    shown = capsys.readouterr()
    assert "reconciled 4 call(s)" in shown.out
    assert "1 complete, 0 filled, 1 missing, 0 erased, 2 failed" in shown.out
    assert long_client["id"] in shown.out
    assert "(not a UUID)" in shown.out
    assert "Unmappable: metadata.client_id is 300 characters long, more than 255" in shown.out
    assert "Unmappable: call.id is not a UUID" in shown.out
    assert "ingest events list --failed --type api.call" in shown.err
    assert "ingest events reapply" in shown.err
    for text in (shown.out, shown.err):
        assert GARBAGE_ID not in text
        assert CALLER not in text
        assert "x" * 100 not in text
    assert _rows(db) == 2
    failed = db.execute("SELECT count(*) FROM call_events WHERE message_type = 'api.call' AND state = 'failed'")
    assert failed.fetchone() == (2,)
    last = reconcile_runs.last_run(db)
    assert last is not None
    assert (last.error, last.failed) == (None, 2)
    assert main(["reconcile", "--json", "--since", "2d"]) == 1
    again = orjson.loads(capsys.readouterr().out)
    assert again["counts"]["failed"] == 2
    assert sorted(item["error"] for item in again["failed"])[0].startswith("Unmappable: call.id is not a UUID")
    use_servers(monkeypatch, db_url=db_url, redis_url=redis_server_url, namespace=redis_namespace)
    main(["queue"])
    out = capsys.readouterr().out
    assert "2 failed" in out
    assert "2 call(s) of the last run could not be mapped or applied" in out


def test_a_failed_api_call_is_reapplied_and_a_spoilt_row_rebuilt(
    fake: FakeVapi, db: Conn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ingest events reapply` applies an api.call kept failed once its cause is fixed (counted once);
    `ingest rebuild` restores a spoilt row from its api.call event, the client's usage unchanged."""
    call = make_call(created_at=NOW - timedelta(hours=6), metadata={"client_id": "acme"})
    fake.add(call)

    def bug(message: dict[str, Any], context: Any) -> Any:
        raise Unmappable("api.call mapping bug")

    with monkeypatch.context() as patched:
        patched.setitem(HANDLERS, "api.call", bug)
        assert main(["reconcile"]) == 1
    assert "1 failed" in capsys.readouterr().out
    assert _rows(db) == 0
    assert main(["events", "reapply", "--failed", "--type", "api.call"]) == 0  # the fix is deployed
    assert "applied 1 of 1" in capsys.readouterr().out
    columns = "ended_at_utc, ended_reason, cost_total, call_summary, call_transcript"
    row = db.execute(f"SELECT {columns} FROM user_sessions WHERE call_id = %s", (call["id"],)).fetchone()
    assert row is not None
    assert (row[1], float(row[2]), row[3]) == (call["endedReason"], call["cost"], call["analysis"]["summary"])
    usage = db.execute("SELECT client_id, month, calls, cost FROM client_monthly_usage").fetchall()
    assert [entry[2] for entry in usage] == [1]
    db.execute("UPDATE user_sessions SET ended_reason = 'corrupted', cost_total = NULL, call_summary = NULL")
    assert main(["rebuild", "--call", call["id"]]) == 0
    assert db.execute(f"SELECT {columns} FROM user_sessions").fetchone() == row
    assert db.execute("SELECT client_id, month, calls, cost FROM client_monthly_usage").fetchall() == usage
    assert main(["reconcile"]) == 0
    assert "1 complete" in capsys.readouterr().out
    assert db.execute("SELECT client_id, month, calls, cost FROM client_monthly_usage").fetchall() == usage
