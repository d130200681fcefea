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
from ingest.event import Event
from ingest.ops import reconcile

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
    assert again["counts"] == {"complete": 2, "filled": 0, "missing": 0, "erased": 0}
    assert again["gaps"] == []


def test_dry_run_applies_nothing(fake: FakeVapi, db: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run prints what would be done and leaves the rows and the run log as they were."""
    _calls(fake, db)
    assert main(["reconcile", "--dry-run", "--json"]) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["dry_run"] is True
    assert shown["counts"]["missing"] == 1
    assert _rows(db) == 1
    assert reconcile.last_run(db) is None


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
    last = reconcile.last_run(db)
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
